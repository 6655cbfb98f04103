// Caption overlay (/overlay): big captions on a transparent page, for streaming
// software. Fed either by its own microphone session (?mic=1) or by the demo page
// over the BroadcastChannel "hushgate-captions". Options: see overlay.html.

import { CAPTION_CHANNEL, GatewaySession } from "./sdk.js";

const params = new URLSearchParams(location.search);
const box = /** @type {HTMLElement} */ (document.getElementById("box"));
const linesEl = /** @type {HTMLElement} */ (document.getElementById("captions"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("status"));

/**
 * @param {string} name
 * @param {number} fallback
 * @param {number} low
 * @param {number} high
 */
function numberParam(name, fallback, low, high) {
  const raw = params.get(name);
  const n = raw === null || raw === "" ? NaN : Number(raw);
  return Number.isFinite(n) ? Math.min(high, Math.max(low, n)) : fallback;
}

/** @param {string | null} raw @returns {string | null} a valid CSS colour */
function colorParam(raw) {
  if (!raw) return null;
  const value = raw.trim();
  if (/^[0-9a-f]{3,8}$/i.test(value) && CSS.supports("color", `#${value}`)) return `#${value}`;
  if (value === "none") return "transparent";
  return CSS.supports("color", value) ? value : null;
}

const options = {
  lines: Math.round(numberParam("lines", 2, 1, 12)),
  target: (params.get("target") || "").trim() || null,
  position: params.get("position") === "top" ? "top" : "bottom",
  align: ["left", "right", "center"].includes(params.get("align") || "") ? params.get("align") : "center",
  fadeMs: numberParam("fade", 0, 0, 3600) * 1000,
  partials: params.get("partials") !== "0",
  mic: params.get("mic") === "1" || params.get("mic") === "true",
  hint: params.get("hint") !== "0",
};

// Looks ----------------------------------------------------------------------------------

const body = document.body;
body.dataset.position = options.position;
body.dataset.align = /** @type {string} */ (options.align);
body.style.setProperty("--lines", String(options.lines));
{
  const size = (params.get("size") || "").trim();
  if (/^\d+(\.\d+)?$/.test(size)) body.style.setProperty("--size", `${Math.min(400, Number(size))}px`);
  else if (size && CSS.supports("font-size", size)) body.style.setProperty("--size", size);
  const color = colorParam(params.get("color"));
  if (color) body.style.setProperty("--color", color);
  const bg = colorParam(params.get("bg"));
  if (bg) body.style.setProperty("--bg", bg);
  const font = (params.get("font") || "").trim();
  if (font) body.style.fontFamily = `${/[\s,"']/.test(font) ? font : `"${font}"`}, system-ui, sans-serif`;
  if (options.target) linesEl.lang = options.target;
}

// Captions -----------------------------------------------------------------------------

/**
 * One utterance: its speech text and translations.
 * @typedef {{text: string, final: boolean, translations: Map<string, {text: string, provisional: boolean}>}} Entry
 */

/** @type {Map<string, Entry>} */
const entries = new Map();
/** @type {ReturnType<typeof setTimeout> | null} */
let fadeTimer = null;
let hintTimer = /** @type {ReturnType<typeof setTimeout> | null} */ (null);

/** @param {string} key @returns {Entry} */
function entryFor(key) {
  let entry = entries.get(key);
  if (!entry) {
    entry = { text: "", final: false, translations: new Map() };
    entries.set(key, entry);
    // Keep memory bounded: only the last few utterances can ever be shown.
    while (entries.size > Math.max(20, options.lines * 4)) entries.delete(entries.keys().next().value);
  }
  return entry;
}

/** @param {Entry} entry @returns {{text: string, partial: boolean}} */
function shown(entry) {
  if (options.target) {
    const t = entry.translations.get(options.target);
    return t ? { text: t.text, partial: t.provisional } : { text: "", partial: false };
  }
  if (!entry.final && !options.partials) return { text: "", partial: true };
  return { text: entry.text, partial: !entry.final };
}

function render() {
  const lines = [];
  for (const entry of entries.values()) {
    const { text, partial } = shown(entry);
    if (text.trim()) lines.push({ text, partial });
  }
  const visible = lines.slice(-options.lines);
  linesEl.replaceChildren(
    ...visible.map(({ text, partial }) => {
      const p = document.createElement("p");
      p.className = partial ? "line partial" : "line";
      p.textContent = text;
      return p;
    }),
  );
  box.hidden = visible.length === 0;
  if (visible.length) hideHint();
  box.classList.remove("faded");
  if (fadeTimer) clearTimeout(fadeTimer);
  if (options.fadeMs > 0) fadeTimer = setTimeout(() => box.classList.add("faded"), options.fadeMs);
}

/**
 * Apply one caption message (the demo's BroadcastChannel format, which the
 * microphone mode produces as well).
 * @param {any} msg
 */
function apply(msg) {
  if (!msg || typeof msg !== "object") return;
  switch (msg.kind) {
    case "reset":
      entries.clear();
      break;
    case "partial": {
      const entry = entryFor(String(msg.key));
      if (entry.final) return;
      entry.text = String(msg.text || "");
      break;
    }
    case "final": {
      const entry = entryFor(String(msg.key));
      entry.final = true;
      entry.text = String(msg.text || "");
      if (!entry.text.trim() && !entry.translations.size) entries.delete(String(msg.key));
      break;
    }
    case "translation": {
      const entry = entryFor(String(msg.key));
      const previous = entry.translations.get(msg.target);
      if (msg.provisional && previous && !previous.provisional) return; // the final one is in
      entry.translations.set(String(msg.target), { text: String(msg.text || ""), provisional: Boolean(msg.provisional) });
      break;
    }
    default:
      return;
  }
  render();
}

/** @param {string} text @param {"info" | "error"} [kind] */
function setStatus(text, kind = "info") {
  statusLine.textContent = text;
  statusLine.dataset.kind = kind;
}

function hideHint() {
  if (hintTimer) clearTimeout(hintTimer);
  hintTimer = null;
  if (statusLine.dataset.kind === "hint") setStatus("");
}

// Sources ------------------------------------------------------------------------------

function listenToDemo() {
  if (typeof BroadcastChannel !== "function") {
    setStatus("This browser cannot receive captions from another page; add ?mic=1 to listen here.", "error");
    return;
  }
  const channel = new BroadcastChannel(CAPTION_CHANNEL);
  channel.onmessage = (event) => apply(event.data);
  if (options.hint) {
    setStatus("Waiting for captions from the demo page…");
    statusLine.dataset.kind = "hint";
    hintTimer = setTimeout(hideHint, 20_000);
  }
}

/** @param {any} err */
function micError(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access is blocked for this page.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found.";
    default:
      return `Microphone error: ${err?.message || err}`;
  }
}

async function listenToMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setStatus("The microphone needs a secure page (https, or localhost).", "error");
    return;
  }
  setStatus("Opening the microphone…");
  /** @type {MediaStream} */
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    setStatus(micError(err), "error");
    return;
  }
  const audioContext = new AudioContext();
  if (audioContext.state === "suspended") {
    audioContext.resume().catch(() => {});
    // Autoplay rules may hold the audio until someone clicks the page once.
    setTimeout(() => {
      if (audioContext.state === "suspended") setStatus("Click the page once to start the microphone.");
    }, 500);
    document.addEventListener("click", () => audioContext.resume().catch(() => {}), { once: true });
    audioContext.addEventListener("statechange", () => {
      if (audioContext.state === "running" && statusLine.textContent.startsWith("Click")) setStatus("");
    });
  }

  const silence = numberParam("silence", NaN, 100, 5000);
  const format = params.get("format") === "msgpack" ? "msgpack" : "json";
  let generation = 0;

  const run = async () => {
    generation += 1;
    const mine = generation;
    const session = new GatewaySession(params.get("server") || "v1/stream", {
      sampleRate: audioContext.sampleRate,
      language: params.get("lang") || undefined,
      partials: true,
      words: false,
      vad: Number.isFinite(silence) ? { silence_ms: Math.round(silence) } : undefined,
      translate: options.target ? { targets: [options.target], partials: true } : undefined,
      format,
      token: params.get("token") || undefined,
      // The overlay owns this connection: it keeps trying, backing off up to 30 s.
      reconnect: { retries: Infinity, baseDelayMs: 1000, maxDelayMs: 30_000 },
    });
    const key = (/** @type {number} */ u) => `${session.sessionId}:${u}`;
    /** @param {string} type @param {(d: any) => void} fn */
    const on = (type, fn) => session.addEventListener(type, (e) => fn(/** @type {CustomEvent} */ (e).detail));
    on("ready", () => setStatus(""));
    on("reconnecting", (d) => setStatus(`Reconnecting in ${Math.ceil(d.delayMs / 1000)} s…`));
    on("partial", (ev) => apply({ kind: "partial", key: key(ev.utterance), text: ev.text }));
    on("final", (ev) => apply({ kind: "final", key: key(ev.utterance), text: ev.text }));
    on("translation", (ev) => {
      if (ev.utterance === undefined) return;
      apply({ kind: "translation", key: key(ev.utterance), target: ev.target, text: ev.text, provisional: ev.provisional });
    });
    on("error", (ev) => {
      if (ev.code === "engine_unavailable" && !ev.fatal) setStatus(ev.message);
    });
    on("close", (d) => {
      if (mine !== generation) return;
      const refused = d.error && ["unsupported_audio", "bad_message", "not_started", "unauthorized"].includes(d.error.code);
      const languageMissing = d.error?.code === "engine_unavailable" && d.code === 1003;
      if (refused || languageMissing) {
        setStatus(d.error.message, "error");
        return;
      }
      // The server ended the session (idle, or its maximum length): start a new one.
      setStatus("Reconnecting…");
      setTimeout(run, 2000);
    });
    setStatus("Connecting…");
    try {
      await session.open();
      await session.sendStream(mic, { audioContext, chunkMs: 40 });
    } catch {
      // Reported through the `close` event.
    }
  };
  run();
}

if (options.mic) listenToMicrophone();
else listenToDemo();
