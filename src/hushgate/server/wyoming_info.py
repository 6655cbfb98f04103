"""The Wyoming ``info`` event: what this gateway's engines offer, in Wyoming's terms."""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from hushgate.server.hub import EngineHub

ATTRIBUTION = Attribution(name="hushgate", url="https://github.com/")


def describe(hub: EngineHub) -> Info:
    """The answer to ``describe``: the speech-to-text models with their languages, and the voices."""
    models: dict[str, AsrModel] = {}
    for language in hub.languages:
        route = hub.stt(language)
        if route is None:
            continue
        model = models.setdefault(
            route.transcriber.model,
            AsrModel(
                name=route.transcriber.model,
                attribution=ATTRIBUTION,
                installed=True,
                description=f"{route.transcriber.name} {route.transcriber.model}",
                version=None,
                languages=[],
            ),
        )
        model.languages.append(language)
    voices = [
        TtsVoice(
            name=v.id,
            attribution=ATTRIBUTION,
            installed=True,
            description=v.description or v.id,
            version=None,
            languages=[v.language],
        )
        for v in hub.voices()
    ]
    return Info(
        asr=[
            AsrProgram(
                name="hushgate",
                attribution=ATTRIBUTION,
                installed=True,
                description="hushgate speech-to-text",
                version=None,
                models=list(models.values()),
                supports_transcript_streaming=True,
            )
        ],
        tts=[
            TtsProgram(
                name="hushgate",
                attribution=ATTRIBUTION,
                installed=True,
                description="hushgate text-to-speech",
                version=None,
                voices=voices,
                supports_synthesize_streaming=True,
            )
        ]
        if voices
        else [],
    )
