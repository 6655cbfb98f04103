// The demo page: microphone -> gateway -> live captions, translations, speech, enrollment.
// Captions are also published on a BroadcastChannel so that /overlay (in another tab
// or in streaming software on the same browser profile) can show them.

import { CAPTION_CHANNEL, GatewaySession, PcmPlayer, formatClock } from "./sdk.js";

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

const ui = {
  start: $("start"),
  stop: $("stop"),
  connection: $("connection"),
  meter: $("meter"),
  meterFill: /** @type {HTMLElement} */ (document.querySelector("#meter .meter-fill")),
  notices: $("notices"),
  transcript: $("transcript"),
  head: $("transcript-head"),
  rows: $("rows"),
  empty: $("empty"),
  clear: $("clear"),
  settingsFields: $("settings-fields"),
  language: $("language"),
  targets: $("targets"),
  targetsNone: $("targets-none"),
  silence: $("silence"),
  voice: $("voice"),
  voicesNone: $("voices-none"),
  speakTranslations: $("speak-translations"),
  format: $("format"),
  speakForm: $("speak-form"),
  speakText: $("speak-text"),
  speak: $("speak"),
  speakStop: $("speak-stop"),
  speakStatus: $("speak-status"),
  enrollForm: $("enroll-form"),
  consent: $("consent"),
  enrollLabel: $("enroll-label"),
  passphrase: $("passphrase"),
  enroll: $("enroll"),
  enrollProgress: $("enroll-progress"),
  enrollProgressText: $("enroll-progress-text"),
  voiceprint: $("voiceprint"),
  verify: $("verify"),
  exportButton: $("export"),
  importButton: $("import-button"),
  importFile: $("import"),
  deleteButton: $("delete"),
  enrollStatus: $("enroll-status"),
  engineInfo: $("engine-info"),
};

/** @type {any} */
let engines = null;
/** @type {GatewaySession | null} */
let session = null;
/** @type {MediaStream | null} */
let mic = null;
/** @type {AudioContext | null} */
let audioContext = null;
/** @type {(() => void) | null} */
let detachPlayer = null;
/** @type {string[]} */
let activeTargets = [];
let sourceLanguage = "en";
/** @type {{id: string, label: string} | null} */
let voiceprint = null;
let level = 0;
let shownLevel = 0;
let serverErrorShown = false;
const player = new PcmPlayer();
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CAPTION_CHANNEL) : null;
const MAX_ROWS = 400;
// A short-lived browser token (POST /v1/tokens) handed to this page as /?token=…
const token = new URLSearchParams(location.search).get("token") || undefined;

/** @type {Map<string, {row: HTMLElement, meta: HTMLElement, time: HTMLElement, source: HTMLElement, cells: Map<string, HTMLElement>, final: boolean}>} */
const rows = new Map();

// Words -------------------------------------------------------------------------

const languageNames = (() => {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" });
  } catch {
    return null;
  }
})();

/** @param {string} code */
function languageName(code) {
  try {
    const name = languageNames?.of(code);
    return name && name !== code ? name : code;
  } catch {
    return code;
  }
}

/** @param {string} text */
function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return "";
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(s) ? s : `${s}.`;
}

/**
 * Words for an error from the server or the SDK.
 * @param {any} err a GatewayError or an `error` event
 */
function describeError(err) {
  const code = err?.code || "";
  const message = err?.message || String(err);
  switch (code) {
    case "engine_unavailable":
      return sentence(message);
    case "overloaded":
      return `The server is busy right now: ${sentence(message)} Try again in a moment.`;
    case "unauthorized":
      return token
        ? "The server did not accept this page's token (it may have expired). Open the page with a new one."
        : "The server needs credentials: open this page as /?token=… with a token from POST /v1/tokens.";
    case "too_large":
      return `That is too long for the server: ${sentence(message)}`;
    case "unsupported_audio":
      return `The server cannot take this microphone's audio: ${sentence(message)}`;
    case "consent_required":
      return "Enrollment needs the speaker's consent: tick the consent box first.";
    case "unknown_voiceprint":
      return "The server does not know that voiceprint. It may have been deleted, or made by another server.";
    case "internal":
      return `The server ran into a problem: ${sentence(message)}`;
    case "timeout":
      return "The server did not answer in time.";
    case "closed":
      return "The connection closed before the server answered.";
    case "connection":
      return sentence(message);
    case "bad_message":
    case "not_started":
      return `The server did not understand a request: ${sentence(message)}`;
    default:
      return sentence(message);
  }
}

/** @param {any} err a getUserMedia failure */
function micErrorText(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access is blocked. Allow it for this site (the icon in the address bar) and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another program may be using it.";
    default:
      return `The microphone could not be opened: ${sentence(err?.message || String(err))}`;
  }
}

// Notices and status -----------------------------------------------------------------

/**
 * Show a message above the page. "info" is for calm news (a feature this server
 * lacks), "warn" for things that may need attention, "error" for failures.
 * @param {string} text
 * @param {"info" | "warn" | "error"} [kind]
 */
function notice(text, kind = "info") {
  if (!text) return;
  for (const li of ui.notices.children) {
    if (li.dataset.text === text) return; // already shown
  }
  const li = document.createElement("li");
  li.className = "notice";
  li.dataset.kind = kind;
  li.dataset.text = text;
  if (kind === "error") li.setAttribute("role", "alert");
  const label = document.createElement("span");
  label.className = "visually-hidden";
  label.textContent = kind === "error" ? "Error: " : kind === "warn" ? "Warning: " : "Note: ";
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "button small close";
  close.textContent = "Dismiss";
  close.setAttribute("aria-label", `Dismiss: ${text}`);
  close.addEventListener("click", () => {
    li.remove();
    ui.start.focus();
  });
  li.append(label, span, close);
  ui.notices.append(li);
  while (ui.notices.children.length > 4) ui.notices.firstElementChild.remove();
}

function clearNotices() {
  ui.notices.replaceChildren();
}

/**
 * @param {"idle" | "connecting" | "open" | "reconnecting" | "stopping" | "error"} state
 * @param {string} text
 */
function setConnection(state, text) {
  ui.connection.dataset.state = state;
  ui.connection.textContent = text;
}

// Settings ----------------------------------------------------------------------------

async function loadEngines() {
  try {
    const res = await fetch("v1/engines", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    engines = await res.json();
  } catch {
    setConnection("error", "Server unreachable");
    notice("Cannot reach the speech server. Retrying…", "warn");
    setTimeout(loadEngines, 3000);
    return;
  }
  if (!engines.ready) {
    setConnection("connecting", "Server is loading…");
    setTimeout(loadEngines, 2000);
    return;
  }
  for (const li of [...ui.notices.children]) {
    if (li.dataset.text.startsWith("Cannot reach")) li.remove();
  }
  fillSettings();
  ui.start.disabled = false;
  setConnection("idle", "Ready");
}

function fillSettings() {
  const languages = engines.languages?.length ? engines.languages : ["en"];
  const preferred = (navigator.language || "en").split("-")[0];
  ui.language.replaceChildren(
    ...languages.map((/** @type {string} */ code) => new Option(`${languageName(code)} (${code})`, code)),
  );
  ui.language.value = languages.includes(preferred) ? preferred : languages[0];
  fillTargets();

  const voices = engines.voices || [];
  ui.voice.replaceChildren(new Option("Default for the language", ""));
  for (const v of voices) {
    ui.voice.append(new Option(`${v.id} (${languageName(v.language)})`, v.id));
  }
  const noVoices = voices.length === 0;
  ui.voicesNone.hidden = !noVoices;
  ui.voice.disabled = noVoices;
  ui.speakTranslations.disabled = noVoices;
  ui.speak.disabled = noVoices;
  ui.speakText.disabled = noVoices;
  ui.speakStop.disabled = noVoices;
  ui.speakStatus.textContent = noVoices
    ? "Speaking is not available: this server has no text-to-speech voices installed."
    : "";
}

function fillTargets() {
  const lang = ui.language.value;
  const targets = [];
  for (const pair of engines?.translation_pairs || []) {
    if (pair.startsWith(`${lang}-`)) targets.push(pair.slice(lang.length + 1));
  }
  ui.targets.replaceChildren(
    ...targets.map((code) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "target";
      box.value = code;
      label.append(box, ` ${languageName(code)} (${code})`);
      return label;
    }),
  );
  ui.targetsNone.hidden = targets.length > 0;
  if (!targets.length) {
    ui.targetsNone.textContent = (engines?.translation_pairs || []).length
      ? `No translations from ${languageName(lang)} are installed on this server.`
      : "No translation engines are installed on this server.";
  }
}

function readSettings() {
  const targets = [...ui.targets.querySelectorAll("input:checked")].map((b) => b.value);
  const silence = Math.round(Number(ui.silence.value));
  const silenceMs = Number.isFinite(silence) && silence >= 100 && silence <= 5000 ? silence : 500;
  ui.silence.value = String(silenceMs);
  return {
    language: ui.language.value || undefined,
    partials: true,
    words: true,
    vad: { silence_ms: silenceMs },
    translate: targets.length ? { targets } : undefined,
    speak: ui.voice.value || ui.speakTranslations.checked
      ? { translations: ui.speakTranslations.checked && targets.length > 0, voice: ui.voice.value || null }
      : undefined,
    format: /** @type {"json" | "msgpack"} */ (ui.format.value),
  };
}

// Captions ----------------------------------------------------------------------------

/** @param {string[]} targets */
function setColumns(targets) {
  ui.transcript.style.setProperty("--cols", String(1 + targets.length));
  ui.transcript.dataset.cols = String(1 + targets.length);
  const cells = ["", sourceLanguage, ...targets].map((code, i) => {
    const div = document.createElement("div");
    div.textContent = i === 0 ? "Time" : languageName(code);
    return div;
  });
  ui.head.replaceChildren(...cells);
  for (const entry of rows.values()) addTargetCells(entry, targets);
}

/** @param {any} entry @param {string[]} targets */
function addTargetCells(entry, targets) {
  for (const t of targets) {
    if (entry.cells.has(t)) continue;
    const cell = document.createElement("div");
    cell.className = "cell translation";
    cell.lang = t;
    entry.row.append(cell);
    entry.cells.set(t, cell);
  }
}

function atBottom() {
  const el = ui.transcript;
  return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
}

/** @param {boolean} stick */
function keepBottom(stick) {
  if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

/**
 * The row of an utterance, made when first needed.
 * @param {string} key
 */
function rowFor(key) {
  let entry = rows.get(key);
  if (entry) return entry;
  const row = document.createElement("div");
  row.className = "row pending";
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = document.createElement("span");
  time.className = "time";
  meta.append(time);
  const source = document.createElement("div");
  source.className = "cell source";
  source.lang = sourceLanguage;
  row.append(meta, source);
  entry = { row, meta, time, source, cells: new Map(), final: false };
  addTargetCells(entry, activeTargets);
  rows.set(key, entry);
  ui.rows.append(row);
  ui.empty.hidden = true;
  while (rows.size > MAX_ROWS) {
    const [oldest, old] = rows.entries().next().value;
    old.row.remove();
    rows.delete(oldest);
  }
  return entry;
}

/** @param {GatewaySession} s @param {number} utterance */
function keyOf(s, utterance) {
  return `${s.sessionId}:${utterance}`;
}

/** @param {number} t0 @param {GatewaySession} s */
function clock(t0, s) {
  return formatClock(t0 + s.clockOffsetMs);
}

/** @param {Record<string, any>} message */
function publish(message) {
  try {
    channel?.postMessage(message);
  } catch {
    // A closed channel or an uncloneable value: the overlay simply misses it.
  }
}

/** @param {GatewaySession} s @param {any} ev */
function onSpeechStarted(s, ev) {
  const stick = atBottom();
  const entry = rowFor(keyOf(s, ev.utterance));
  if (!entry.final && !entry.source.textContent) {
    const span = document.createElement("span");
    span.className = "partial";
    span.setAttribute("aria-hidden", "true");
    span.textContent = "…";
    entry.source.replaceChildren(span);
    entry.time.textContent = clock(ev.t_ms, s);
  }
  keepBottom(stick);
}

/** @param {GatewaySession} s @param {any} ev */
function onPartial(s, ev) {
  const key = keyOf(s, ev.utterance);
  const entry = rowFor(key);
  if (entry.final) return;
  const stick = atBottom();
  const span = document.createElement("span");
  span.className = "partial";
  span.setAttribute("aria-hidden", "true"); // announced once, as the final
  span.textContent = ev.text;
  entry.source.replaceChildren(span);
  entry.time.textContent = clock(ev.t0_ms, s);
  keepBottom(stick);
  publish({ kind: "partial", key, utterance: ev.utterance, text: ev.text, t0_ms: ev.t0_ms + s.clockOffsetMs });
}

/** @param {GatewaySession} s @param {any} ev */
function onFinal(s, ev) {
  const key = keyOf(s, ev.utterance);
  const stick = atBottom();
  if (!ev.text || !ev.text.trim()) {
    // Nothing was said after all (a cough, a door): drop the row.
    const entry = rows.get(key);
    if (entry) {
      entry.row.remove();
      rows.delete(key);
    }
    ui.empty.hidden = rows.size > 0;
    publish({ kind: "final", key, utterance: ev.utterance, text: "" });
    return;
  }
  const entry = rowFor(key);
  entry.final = true;
  entry.row.classList.remove("pending");
  entry.row.classList.add("final");
  entry.time.textContent = clock(ev.t0_ms, s);
  const label = ev.speaker?.label;
  entry.meta.querySelector(".speaker")?.remove();
  if (label) {
    const chip = document.createElement("span");
    chip.className = "speaker";
    chip.textContent = label;
    chip.title = ev.speaker.voiceprint_id ? `${label} (enrolled, score ${Number(ev.speaker.score).toFixed(2)})` : label;
    entry.meta.append(chip);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = ev.text;
  entry.source.replaceChildren(text);
  for (const cell of entry.cells.values()) {
    if (!cell.textContent) {
      cell.classList.add("waiting");
      cell.textContent = "…";
    }
  }
  keepBottom(stick);
  publish({
    kind: "final", key, utterance: ev.utterance, text: ev.text, t0_ms: ev.t0_ms + s.clockOffsetMs,
    speaker: label || null,
  });
}

/** @param {GatewaySession} s @param {any} ev */
function onTranslation(s, ev) {
  if (ev.utterance === undefined || ev.utterance === null) return; // the answer to a `translate` request
  const key = keyOf(s, ev.utterance);
  const entry = rowFor(key);
  const cell = entry.cells.get(ev.target);
  if (cell) {
    const stick = atBottom();
    cell.classList.remove("waiting");
    const span = document.createElement("span");
    span.className = ev.provisional ? "provisional" : "text";
    if (ev.provisional) span.setAttribute("aria-hidden", "true");
    span.textContent = ev.text;
    cell.replaceChildren(span);
    keepBottom(stick);
  }
  publish({
    kind: "translation", key, utterance: ev.utterance, target: ev.target, text: ev.text,
    provisional: Boolean(ev.provisional),
  });
}

function clearCaptions() {
  rows.clear();
  ui.rows.replaceChildren();
  ui.empty.hidden = false;
  publish({ kind: "reset" });
}

// Level meter ---------------------------------------------------------------------------

function drawMeter() {
  shownLevel = Math.max(level, shownLevel * 0.88);
  level = 0;
  ui.meterFill.style.transform = `scaleX(${shownLevel.toFixed(3)})`;
  const pct = String(Math.round(shownLevel * 100));
  if (ui.meter.getAttribute("aria-valuenow") !== pct) ui.meter.setAttribute("aria-valuenow", pct);
  requestAnimationFrame(drawMeter);
}

/** @param {{rms: number, peak: number}} detail */
function onLevel(detail) {
  // -60 dBFS .. 0 dBFS of the chunk's RMS onto 0..1.
  const db = 20 * Math.log10(Math.max(1e-6, detail.rms));
  level = Math.max(level, Math.min(1, Math.max(0, (db + 60) / 60)));
}

// Session -----------------------------------------------------------------------------

async function start() {
  if (session) return;
  ui.start.disabled = true;
  serverErrorShown = false;
  for (const li of [...ui.notices.children]) if (li.dataset.kind !== "info") li.remove();
  if (!navigator.mediaDevices?.getUserMedia || !window.isSecureContext) {
    fail("The microphone only works on a secure page: open this demo over https, or at localhost.");
    return;
  }
  setConnection("connecting", "Opening the microphone…");
  player.unlock(); // inside the click, so that speech can play later
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    fail(micErrorText(err));
    return;
  }
  audioContext = new AudioContext();
  const settings = readSettings();
  sourceLanguage = settings.language || "en";
  activeTargets = settings.translate?.targets || [];
  setColumns(activeTargets);

  const s = new GatewaySession("v1/stream", {
    ...settings,
    token,
    sampleRate: audioContext.sampleRate,
    reconnect: { retries: 6, baseDelayMs: 500 },
  });
  session = s;
  wire(s);
  ui.stop.disabled = false;
  ui.settingsFields.disabled = true;
  setConnection("connecting", "Connecting…");
  try {
    await s.open();
  } catch (err) {
    if (session === s) {
      if (!serverErrorShown) fail(describeError(err));
      else teardown("error", "Not connected");
    }
    return;
  }
  try {
    await s.sendStream(mic, { audioContext, chunkMs: 40 });
  } catch (err) {
    notice(`Audio capture failed: ${sentence(/** @type {any} */ (err)?.message || String(err))}`, "error");
    s.close();
    return;
  }
  updateEnrollButtons();
}

/** @param {string} text */
function fail(text) {
  notice(text, "error");
  teardown("error", "Not connected");
}

async function stop() {
  const s = session;
  if (!s) return;
  ui.stop.disabled = true;
  setConnection("stopping", "Finishing…");
  try {
    const ended = await s.stop();
    if (ended?.stats) {
      const secs = Math.round(ended.stats.audio_ms / 1000);
      ui.engineInfo.textContent = `Last session: ${formatClock(secs * 1000)} of audio, ${ended.stats.utterances} captions.`;
    }
  } catch (err) {
    notice(describeError(err), "warn");
  }
  if (session === s) teardown("idle", "Stopped");
}

/**
 * Back to the state before Start.
 * @param {"idle" | "error"} state
 * @param {string} text
 */
function teardown(state, text) {
  session = null;
  detachPlayer?.();
  detachPlayer = null;
  for (const track of mic?.getTracks() || []) track.stop();
  mic = null;
  audioContext?.close().catch(() => {});
  audioContext = null;
  level = 0;
  ui.start.disabled = !engines?.ready;
  ui.stop.disabled = true;
  ui.settingsFields.disabled = false;
  setConnection(state, text);
  updateEnrollButtons();
  publish({ kind: "state", state: state === "error" ? "closed" : "stopped" });
}

/** @param {GatewaySession} s */
function wire(s) {
  detachPlayer = player.attach(s);
  const on = (/** @type {string} */ type, /** @type {(detail: any) => void} */ fn) =>
    s.addEventListener(type, (e) => {
      if (session === s) fn(/** @type {CustomEvent} */ (e).detail);
    });

  on("ready", (ev) => {
    const stt = ev.engines?.stt;
    const name = stt?.engine || stt?.name || "";
    const model = stt?.model && String(stt.model).includes(name) ? stt.model : `${name} ${stt?.model || ""}`.trim();
    setConnection("open", "Listening");
    ui.engineInfo.textContent = model ? `Speech to text: ${model}` : "";
    if (s.clockOffsetMs > 0) {
      notice("Reconnected. Captions continue.", "info");
      if (voiceprint) {
        voiceprint = null;
        ui.enrollStatus.textContent =
          "The connection was renewed, so the server forgot the voiceprint. Import it again if you exported it.";
      }
    }
    for (const li of [...ui.notices.children]) {
      if (li.dataset.text.startsWith("Connection lost")) li.remove();
    }
    updateEnrollButtons();
    publish({ kind: "state", state: "open" });
  });
  on("reconnecting", (d) => {
    const secs = (d.delayMs / 1000).toFixed(1);
    setConnection("reconnecting", `Reconnecting (${d.attempt}/${d.retries})…`);
    notice(`Connection lost. Trying again in ${secs} s (attempt ${d.attempt} of ${d.retries}).`, "warn");
    updateEnrollButtons();
  });
  on("close", (d) => {
    if (d.error && !serverErrorShown) notice(describeError(d.error), "error");
    teardown(d.error ? "error" : "idle", d.error ? "Disconnected" : "Stopped");
  });
  on("speech.started", (ev) => onSpeechStarted(s, ev));
  on("partial", (ev) => onPartial(s, ev));
  on("final", (ev) => onFinal(s, ev));
  on("translation", (ev) => onTranslation(s, ev));
  on("level", onLevel);
  on("enroll.progress", (ev) => {
    const needed = Math.max(1, ev.needed_ms || 1);
    ui.enrollProgress.value = Math.min(1, ev.speech_ms / needed);
    ui.enrollProgressText.textContent = `${(ev.speech_ms / 1000).toFixed(1)} s of ${(needed / 1000).toFixed(1)} s`;
  });
  on("error", (ev) => {
    // Errors that answer a request are shown by that request's panel.
    if (ev.id !== undefined && ev.id !== null) return;
    if (ev.fatal) {
      serverErrorShown = true;
      notice(describeError(ev), "error");
      return;
    }
    notice(describeError(ev), ev.code === "engine_unavailable" ? "info" : "warn");
  });
}

// Speak ---------------------------------------------------------------------------------

/**
 * PCM samples of a 16-bit mono WAV file.
 * @param {ArrayBuffer} buffer
 */
function parseWav(buffer) {
  const view = new DataView(buffer);
  const tag = (/** @type {number} */ at) => String.fromCharCode(...new Uint8Array(buffer, at, 4));
  if (buffer.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a WAV file");
  let rate = 0;
  let at = 12;
  while (at + 8 <= buffer.byteLength) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    if (id === "fmt ") rate = view.getUint32(at + 12, true);
    if (id === "data") {
      const n = Math.floor(Math.min(size, buffer.byteLength - at - 8) / 2);
      const pcm = new Int16Array(n);
      for (let i = 0; i < n; i++) pcm[i] = view.getInt16(at + 8 + 2 * i, true);
      return { pcm, sampleRate: rate };
    }
    at += 8 + size + (size % 2);
  }
  throw new Error("the WAV file has no audio");
}

/** @param {SubmitEvent} event */
async function speak(event) {
  event.preventDefault();
  const text = ui.speakText.value.trim();
  if (!text) {
    ui.speakStatus.textContent = "Type something to speak first.";
    return;
  }
  player.unlock();
  const voice = ui.voice.value || undefined;
  const language = voice ? undefined : ui.language.value || undefined;
  ui.speakStatus.textContent = "Synthesizing…";
  if (session?.isOpen) {
    try {
      const result = await session.speak(text, { voice, language });
      ui.speakStatus.textContent = `Spoken: ${(result.durationMs / 1000).toFixed(1)} s with the voice ${result.voice}.`;
    } catch (err) {
      ui.speakStatus.textContent = describeError(err);
    }
    return;
  }
  // No session open: the plain HTTP endpoint does the same.
  try {
    const res = await fetch(token ? `v1/tts?token=${encodeURIComponent(token)}` : "v1/tts", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text, voice: voice ?? null, language: language ?? null }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      ui.speakStatus.textContent = res.status === 404
        ? "No voice for that language is installed on this server."
        : res.status === 401 || res.status === 403
          ? describeError({ code: "unauthorized" })
          : sentence(body.error || `The server answered ${res.status}`);
      return;
    }
    const wav = parseWav(await res.arrayBuffer());
    player.enqueue(wav.pcm, wav.sampleRate);
    const voiceUsed = res.headers.get("x-voice");
    ui.speakStatus.textContent = `Spoken: ${(wav.pcm.length / wav.sampleRate).toFixed(1)} s${voiceUsed ? ` with the voice ${voiceUsed}` : ""}.`;
  } catch (err) {
    ui.speakStatus.textContent = `Could not synthesize: ${sentence(/** @type {any} */ (err)?.message || String(err))}`;
  }
}

// Enrollment --------------------------------------------------------------------------

function updateEnrollButtons() {
  const open = Boolean(session?.isOpen);
  ui.enroll.disabled = !ui.consent.checked;
  ui.verify.disabled = !(open && voiceprint);
  ui.exportButton.disabled = !(open && voiceprint);
  ui.deleteButton.disabled = !(open && voiceprint);
  ui.voiceprint.textContent = voiceprint
    ? `Voiceprint: ${voiceprint.label || "unnamed"} (${voiceprint.id.slice(0, 8)}…)`
    : "No voiceprint yet.";
}

/**
 * Words for a failed speaker request; a server without the feature is normal.
 * @param {any} err
 */
function speakerError(err) {
  if (err?.code === "engine_unavailable") {
    return `${sentence(err.message)} The rest of the demo works as usual.`;
  }
  return describeError(err);
}

function needSession() {
  if (session?.isOpen) return true;
  ui.enrollStatus.textContent = "Press Start first: enrollment and verification listen to what you say next.";
  return false;
}

/** @param {SubmitEvent} event */
async function enroll(event) {
  event.preventDefault();
  if (!ui.consent.checked) {
    ui.enrollStatus.textContent = "Tick the consent box first.";
    return;
  }
  if (!needSession() || !session) return;
  ui.enroll.disabled = true;
  ui.enrollProgress.value = 0;
  ui.enrollProgressText.textContent = "0.0 s";
  ui.enrollStatus.textContent = "Enrolling: keep talking until the bar is full.";
  try {
    const done = await session.enroll({
      consent: true, label: ui.enrollLabel.value.trim() || undefined, passphrase: ui.passphrase.value || null,
    });
    voiceprint = { id: done.voiceprint_id, label: done.label || ui.enrollLabel.value.trim() };
    ui.enrollProgress.value = 1;
    ui.enrollStatus.textContent = `Enrolled ${voiceprint.label || "the speaker"} from ${(done.speech_ms / 1000).toFixed(1)} s of speech.`;
  } catch (err) {
    ui.enrollStatus.textContent = speakerError(err);
  }
  updateEnrollButtons();
}

async function verify() {
  if (!voiceprint || !needSession() || !session) return;
  ui.enrollStatus.textContent = "Verifying: say something.";
  try {
    const r = await session.verify(voiceprint.id);
    const score = Number(r.score).toFixed(2);
    let text = r.decision === "accept"
      ? `Match: this sounds like ${voiceprint.label || "the enrolled speaker"} (score ${score}).`
      : `Not a match (score ${score}).`;
    if (r.passphrase_match !== undefined) text += r.passphrase_match ? " Passphrase correct." : " Passphrase wrong.";
    ui.enrollStatus.textContent = text;
  } catch (err) {
    ui.enrollStatus.textContent = speakerError(err);
  }
}

async function exportVoiceprint() {
  if (!voiceprint || !needSession() || !session) return;
  try {
    const r = await session.exportVoiceprint(voiceprint.id);
    const blob = new Blob([r.voiceprint], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `voiceprint-${(voiceprint.label || "speaker").replace(/[^\w-]+/g, "_")}.txt`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    ui.enrollStatus.textContent = "Voiceprint exported. It is sealed: only this server's key can open it.";
  } catch (err) {
    ui.enrollStatus.textContent = speakerError(err);
  }
}

async function importVoiceprint() {
  const file = ui.importFile.files?.[0];
  ui.importFile.value = "";
  if (!file || !needSession() || !session) return;
  try {
    const r = await session.importVoiceprint(file);
    voiceprint = { id: r.voiceprint_id, label: r.label || file.name.replace(/^voiceprint-|\.txt$/g, "") };
    ui.enrollStatus.textContent = "Voiceprint imported.";
  } catch (err) {
    ui.enrollStatus.textContent = speakerError(err);
  }
  updateEnrollButtons();
}

async function deleteVoiceprint() {
  if (!voiceprint || !needSession() || !session) return;
  try {
    await session.deleteVoiceprint(voiceprint.id);
    voiceprint = null;
    ui.enrollProgress.value = 0;
    ui.enrollProgressText.textContent = "0.0 s";
    ui.enrollStatus.textContent = "The server has forgotten the voiceprint.";
  } catch (err) {
    ui.enrollStatus.textContent = speakerError(err);
  }
  updateEnrollButtons();
}

// Wiring --------------------------------------------------------------------------------

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.clear.addEventListener("click", clearCaptions);
ui.language.addEventListener("change", fillTargets);
ui.speakForm.addEventListener("submit", speak);
ui.speakStop.addEventListener("click", () => {
  player.clear();
  ui.speakStatus.textContent = "Stopped.";
});
ui.consent.addEventListener("change", updateEnrollButtons);
ui.enrollForm.addEventListener("submit", enroll);
ui.verify.addEventListener("click", verify);
ui.exportButton.addEventListener("click", exportVoiceprint);
ui.importButton.addEventListener("click", () => ui.importFile.click());
ui.importFile.addEventListener("change", importVoiceprint);
ui.deleteButton.addEventListener("click", deleteVoiceprint);
ui.settingsForm = $("settings");
ui.settingsForm.addEventListener("submit", (/** @type {Event} */ e) => e.preventDefault());
window.addEventListener("pagehide", () => session?.close(1001, "page closed"));

updateEnrollButtons();
setColumns([]);
requestAnimationFrame(drawMeter);
loadEngines();
