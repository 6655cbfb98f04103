"""The texts the request benches send: sentences to translate and texts to speak."""

from __future__ import annotations

# Utterance-like English sentences of 4-35 words (bench/translate.py).
TRANSLATE_SENTENCES = [
    "Good morning.",
    "Can you hear me now?",
    "Let's get started with today's meeting.",
    "I think we should move the deadline to next Friday.",
    "The weather is supposed to be nice this weekend.",
    "Could you send me the report before lunch?",
    "My flight was delayed by two hours, so I missed the connection.",
    "We need to buy more milk, bread and eggs.",
    "Thank you very much for your help.",
    "The new version of the software will be released in March.",
    "Please turn left at the next traffic light and park behind the blue building.",
    "I don't know where she put the keys.",
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "He hoped there would be stew for dinner, turnips and carrots and bruised potatoes "
    "and fat mutton pieces to be ladled out in thick peppered flour fattened sauce.",
    "The children are playing in the garden.",
    "How much does a ticket to the museum cost?",
    "If the reader will excuse me, I will say nothing of my antecedents nor of the circumstances "
    "which led me to leave my native country.",
    "We finished the project on time and under budget.",
    "Where is the nearest train station?",
    "She works at the hospital as a nurse.",
    "It is important to drink enough water every day.",
    "The meeting has been cancelled because half of the team is sick.",
    "Yes, that's right.",
    "I would like to book a table for four people at eight o'clock tonight, "
    "preferably near the window, if that is possible.",
]

# Text classes of bench/tts.py (its docstring says what each class tests).
TTS_TEXTS: dict[str, list[str]] = {
    "short": [
        "Hello there.",
        "Yes, I can hear you.",
        "Thank you, goodbye.",
        "Your table is ready.",
    ],
    "long, 1-word 1st clause": [
        "Sure, the quarterly maintenance window for the northern data center has been moved from Saturday night to "
        "Sunday morning because the cooling contractor could not get access to the building before then, and all "
        "services will stay online during the work although the reporting tools may respond more slowly for about "
        "an hour.",
        "Okay, your order of two blue ceramic mugs and the matching teapot left our warehouse this morning and is "
        "expected to arrive at your address on Thursday afternoon between two and five o'clock, so if nobody is "
        "home the driver will leave a note with instructions for picking it up at the nearest post office.",
        "Right, the committee reviewed every proposal that was submitted before the end of last month and decided "
        "to fund the three projects that promised the largest reduction in energy use for the smallest cost, and "
        "the teams will hear from us by email within the next two weeks.",
    ],
    "long, short 1st sentence": [
        "Sure, I can help with that. Your flight to Denver leaves at seven forty in the morning from gate "
        "twelve, and boarding starts thirty minutes earlier, so please plan to arrive at the airport at least "
        "two hours before departure, because the security lines are usually long on Monday mornings.",
        "Okay, here is the plan for tomorrow. We meet at the north entrance at nine, walk through the old town "
        "until lunch, and then take the afternoon train to the coast, where the hotel has already confirmed our "
        "rooms for two nights and arranged a late checkout on Sunday so that nobody has to hurry.",
        "Sure, let me check that for you. The package was shipped on Tuesday from the regional warehouse, it "
        "cleared the sorting center yesterday evening, and the tracking system now says it is out for delivery, "
        "so it should reach your front door before six o'clock today unless the weather causes delays.",
    ],
    "long, long 1st clause": [
        "The quarterly maintenance window for the northern data center has been moved from Saturday night to "
        "Sunday morning because the cooling contractor could not get access to the building before then. All "
        "services will stay online during the work, but you may notice slower responses from the reporting "
        "tools for about an hour.",
        "Your order of two blue ceramic mugs and the matching teapot left our warehouse this morning and is "
        "expected to arrive at your address on Thursday afternoon between two and five o'clock. If nobody is "
        "home, the driver will leave a note with instructions for picking it up at the nearest post office.",
        "The committee reviewed every proposal that was submitted before the end of last month and decided to "
        "fund the three projects that promised the largest reduction in energy use for the smallest cost. The "
        "teams will hear from us by email within the next two weeks.",
    ],
}
