// Browser SDK for the speech gateway (wire protocol v1, see docs/protocol.md).
//
//   import { connect } from "/web/sdk.js";
//   const session = await connect("/v1/stream", { language: "en", translate: { targets: ["es"] } });
//   session.addEventListener("final", (e) => console.log(e.detail.text));
//   const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
//   await session.sendStream(mic);
//   ...
//   await session.stop();   // resolves with the `ended` event's detail
//
// Every server event is dispatched as a CustomEvent named after its `type`
// (`ready`, `speech.started`, `partial`, `final`, `translation`, `tts.start`,
// `tts.audio`, `tts.end`, `enroll.progress`, `enrolled`, `verified`,
// `voiceprint.exported`, `voiceprint.imported`, `voiceprint.deleted`, `pong`,
// `error`, `ended`, and any type a newer server adds) with the event as `detail`.
// `tts.audio` always has detail `{id, pcm: Int16Array}`, in both encodings.
// The SDK adds: `message` (every server event, detail = the event), `close`
// (the session is over for good: detail `{code, reason, willReconnect: false}`),
// `reconnecting` (detail `{attempt, retries, delayMs, code, reason}`), `state`
// (detail `{state}`), and `level` (microphone level while `sendStream` runs:
// detail `{peak, rms}`, each 0..1).

import { decode as msgpackDecode, encode as msgpackEncode } from "./msgpack.js";

/**
 * @typedef {object} VadOptions
 * @property {number} [aggressiveness] 0..3
 * @property {number} [silence_ms] 100..5000
 * @property {number} [max_utterance_ms] 1000..30000
 */

/**
 * @typedef {object} TranslateOptions
 * @property {string[]} [targets] target languages
 * @property {boolean} [partials] also translate partials (provisional translations)
 */

/**
 * @typedef {object} SpeakOptions
 * @property {boolean} [translations] speak each final's translation
 * @property {string | null} [voice] a voice id from GET /v1/engines
 * @property {number} [sample_rate] rate of the synthesized PCM sent back
 */

/**
 * @typedef {object} SpeakerOptions
 * @property {boolean} [identify]
 * @property {boolean} [diarize]
 * @property {string[]} [voiceprints] sealed voiceprints kept from earlier sessions
 */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [retries=5] attempts after a lost connection before giving up
 * @property {number} [baseDelayMs=500] first delay; doubled on each attempt (with jitter)
 * @property {number} [maxDelayMs=30000] longest delay
 */

/**
 * @typedef {object} ConnectOptions
 * @property {number} [sampleRate] rate of the PCM you will send; default: the browser's
 *   native audio rate (usually 48000), which is what `sendStream` captures at
 * @property {string} [language] e.g. "en"; default: the server's
 * @property {boolean} [partials=true]
 * @property {boolean} [words=true]
 * @property {VadOptions} [vad]
 * @property {TranslateOptions | string[]} [translate] options, or just the targets
 * @property {SpeakOptions} [speak]
 * @property {SpeakerOptions} [speakers]
 * @property {"json" | "msgpack"} [format="json"]
 * @property {string} [token] credential, sent as the `token` query parameter
 * @property {ReconnectOptions | boolean} [reconnect] reconnect with exponential backoff
 *   when the connection is lost (or the server is busy or still loading); `true` means
 *   the defaults. Each reconnection is a new server session: its audio clock starts at
 *   0 again, and `session.clockOffsetMs` tells how much audio came before it.
 * @property {number} [connectTimeoutMs=15000] time allowed for `ready` to arrive
 */

/**
 * @typedef {object} StreamOptions
 * @property {AudioContext} [audioContext] a context to capture in (its rate should equal
 *   the session's sampleRate); default: a new one at the session's rate
 * @property {number} [chunkMs=40] size of each audio frame sent, 20..100 ms is good
 * @property {string} [workletUrl] where pcm-worklet.js is; default: beside this file
 */

/**
 * @typedef {object} StreamHandle
 * @property {AudioContext} context
 * @property {() => Promise<void>} stop stops capturing (the session stays open)
 */

/**
 * @typedef {object} SpeechResult
 * @property {string | number} id
 * @property {number} sampleRate
 * @property {string} voice
 * @property {number} durationMs
 * @property {Int16Array} pcm the whole synthesis
 */

/** The server reported an `error`, or the connection failed. */
export class GatewayError extends Error {
  /**
   * @param {string} code an error code of the protocol (e.g. `engine_unavailable`), or
   *   `connection` / `closed` / `timeout` for failures on this side
   * @param {string} message
   * @param {{fatal?: boolean, id?: string, closeCode?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "GatewayError";
    this.code = code;
    this.fatal = Boolean(extra.fatal);
    this.id = extra.id;
    this.closeCode = extra.closeCode;
  }
}

// Close codes after which trying again cannot help (the request itself was refused).
const FINAL_CLOSE_CODES = new Set([1003, 1007, 1008, 1009]);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** @param {Int16Array} samples @returns {Uint8Array} little-endian bytes */
function int16ToBytes(samples) {
  if (LITTLE_ENDIAN) return new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  samples.forEach((s, i) => view.setInt16(2 * i, s, true));
  return out;
}

/** @param {ArrayBuffer | Uint8Array} data little-endian bytes @returns {Int16Array} */
function bytesToInt16(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const n = bytes.byteLength >> 1;
  if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) return new Int16Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Int16Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
  return out;
}

/**
 * The rate audio is captured at in this browser (usually 48000), or 48000 where
 * there is no Web Audio.
 * @returns {Promise<number>}
 */
export async function nativeSampleRate() {
  const Ctx = globalThis.AudioContext || /** @type {any} */ (globalThis).webkitAudioContext;
  if (!Ctx) return 48000;
  const ctx = new Ctx();
  const rate = ctx.sampleRate;
  ctx.close().catch(() => {});
  return rate;
}

/**
 * The WebSocket URL for a gateway address: a ws(s):// or http(s):// URL, a path
 * (resolved against the page), or nothing (this page's server).
 * @param {string | URL | undefined} url
 * @param {{format?: string, token?: string}} options
 * @returns {string}
 */
export function streamUrl(url, options = {}) {
  const base = globalThis.location ? globalThis.location.href : "http://localhost:8000/";
  const u = new URL(url ? String(url) : "/v1/stream", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/stream";
  if (options.format && options.format !== "json") u.searchParams.set("format", options.format);
  if (options.token) u.searchParams.set("token", options.token);
  return u.toString();
}

/**
 * Open a session: connect, send `start`, and wait for `ready`.
 * Rejects with a {@link GatewayError} when the server refuses the session.
 * @param {string | URL} [url] e.g. "ws://localhost:8000/v1/stream", or "/v1/stream"
 * @param {ConnectOptions} [options]
 * @returns {Promise<GatewaySession>}
 */
export async function connect(url, options = {}) {
  const opts = { ...options };
  if (!opts.sampleRate) opts.sampleRate = await nativeSampleRate();
  const session = new GatewaySession(url, opts);
  await session.open();
  return session;
}

/**
 * One streaming session with the gateway (reconnecting, if asked, as new server sessions).
 */
export class GatewaySession extends EventTarget {
  /**
   * Use {@link connect} rather than this constructor.
   * @param {string | URL | undefined} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    super();
    /** @type {ConnectOptions} */
    this.options = options;
    this.format = options.format === "msgpack" ? "msgpack" : "json";
    if (options.format && options.format !== "json" && options.format !== "msgpack") {
      throw new TypeError(`format must be "json" or "msgpack", not ${JSON.stringify(options.format)}`);
    }
    this.url = streamUrl(url, { format: this.format, token: options.token });
    this.sampleRate = options.sampleRate || 48000;
    const rc = options.reconnect === true ? {} : options.reconnect || null;
    /** @type {Required<ReconnectOptions> | null} */
    this.reconnectPolicy = rc
      ? { retries: rc.retries ?? 5, baseDelayMs: rc.baseDelayMs ?? 500, maxDelayMs: rc.maxDelayMs ?? 30000 }
      : null;
    /** "idle" | "connecting" | "open" | "reconnecting" | "stopping" | "closed" */
    this.state = "idle";
    /** @type {any} the `ready` event of the current server session */
    this.readyInfo = null;
    /** @type {string | null} */
    this.sessionId = null;
    /** audio sent in earlier server sessions (ms), to put times of all of them on one clock */
    this.clockOffsetMs = 0;
    /** samples sent in the current server session */
    this.samplesSent = 0;
    /** @type {WebSocket | null} */
    this.ws = null;
    this._attempt = 0;
    this._wantClose = false;
    this._ttsId = /** @type {string | number | null} */ (null);
    this._counter = 0;
    /** @type {Map<string, {resolve: (v: any) => void, reject: (e: any) => void, kind: string, chunks?: Int16Array[], info?: any, voiceprintId?: string}>} */
    this._pending = new Map();
    /** @type {{resolve: (v: number) => void, sent: number}[]} */
    this._pings = [];
    /** @type {{resolve: (v: any) => void, reject: (e: any) => void}[]} */
    this._stopWaiters = [];
    /** @type {StreamHandle | null} */
    this._stream = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._retryTimer = null;
    /** @type {{resolve: (v: any) => void, reject: (e: any) => void} | null} */
    this._firstOpen = null;
    this._endedSeen = false;
    /** @type {any} the last `ended` event */
    this._ended = null;
  }

  /** @param {string} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state });
  }

  /** @param {string} type @param {any} detail */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** The `start` message these options describe. */
  startMessage() {
    const o = this.options;
    /** @type {Record<string, any>} */
    const msg = { type: "start", audio: { encoding: "pcm_s16le", sample_rate: this.sampleRate, channels: 1 } };
    if (o.language) msg.language = o.language;
    if (o.partials !== undefined) msg.partials = o.partials;
    if (o.words !== undefined) msg.words = o.words;
    if (o.vad) msg.vad = o.vad;
    if (o.translate) msg.translate = Array.isArray(o.translate) ? { targets: o.translate } : o.translate;
    if (o.speak) msg.speak = o.speak;
    if (o.speakers) msg.speakers = o.speakers;
    return msg;
  }

  /**
   * Connect (and, with `reconnect`, keep trying with backoff) until `ready`.
   * Called by {@link connect}.
   * @returns {Promise<any>} the `ready` event
   */
  open() {
    this._wantClose = false;
    return new Promise((resolve, reject) => {
      this._firstOpen = { resolve, reject };
      this._dial();
    });
  }

  _dial() {
    this._setState(this._attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._finish(new GatewayError("connection", `cannot open ${this.url}: ${err}`), 1006, "");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.readyInfo = null;
    this._ttsId = null;
    this._ended = null;
    this._endedSeen = false;
    /** @type {GatewayError | null} */
    let fatal = null;
    const timeoutMs = this.options.connectTimeoutMs ?? 15000;
    const timer = setTimeout(() => {
      if (this.ws === ws && !this.readyInfo) {
        fatal = new GatewayError("timeout", "the server did not answer `start` in time");
        ws.close(4000, "timeout");
      }
    }, timeoutMs);

    ws.onopen = () => {
      this.samplesSent = 0;
      this._sendMessage(this.startMessage());
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      const msg = this._decode(event.data);
      if (!msg) return;
      if (msg.type === "ready") {
        clearTimeout(timer);
        this.readyInfo = msg;
        this.sessionId = msg.session;
        this._attempt = 0;
        if (this.state !== "stopping") this._setState("open");
      } else if (msg.type === "error" && msg.fatal) {
        fatal = new GatewayError(msg.code, msg.message, { fatal: true });
      }
      this._handle(msg);
      if (msg.type === "ready" && this._firstOpen) {
        this._firstOpen.resolve(msg);
        this._firstOpen = null;
      }
    };
    ws.onerror = () => {
      // A close event always follows; it decides what happens.
    };
    ws.onclose = (event) => {
      clearTimeout(timer);
      if (this.ws !== ws) return;
      this.ws = null;
      const wasReady = Boolean(this.readyInfo);
      const ended = this._endedSeen;
      this._endedSeen = false;
      if (wasReady) this.clockOffsetMs += Math.round((this.samplesSent * 1000) / this.sampleRate);
      this.samplesSent = 0;
      this._failPending(new GatewayError("closed", "the connection closed before an answer came", {
        closeCode: event.code,
      }));
      // A session the server ended at its maximum duration, or because that
      // replica is shutting down (a rolling update), is worth a new one; one
      // ended for being idle, or stopped, is not.
      const endedForGood = ended && !["max_duration", "shutdown"].includes(this._ended?.reason);
      const retryable = !this._wantClose && !endedForGood && !FINAL_CLOSE_CODES.has(event.code);
      const policy = this.reconnectPolicy;
      if (retryable && policy && this._attempt < policy.retries) {
        this._attempt += 1;
        const exp = policy.baseDelayMs * 2 ** (this._attempt - 1);
        const delayMs = Math.round(Math.min(policy.maxDelayMs, exp) * (0.8 + 0.4 * Math.random()));
        this._setState("reconnecting");
        this._emit("reconnecting", {
          attempt: this._attempt, retries: policy.retries, delayMs, code: event.code,
          reason: fatal ? fatal.message : event.reason,
        });
        this._retryTimer = setTimeout(() => {
          this._retryTimer = null;
          if (!this._wantClose) this._dial();
        }, delayMs);
        return;
      }
      const error = this._wantClose ? null : fatal || (ended ? null : new GatewayError(
        "connection",
        event.reason || (wasReady ? "the connection to the server was lost" : `cannot connect to ${this.url}`),
        { closeCode: event.code },
      ));
      this._finish(error, event.code, event.reason);
    };
  }

  /**
   * @param {GatewayError | null} error
   * @param {number} code
   * @param {string} reason
   */
  _finish(error, code, reason) {
    this._setState("closed");
    this._stopCapture();
    if (this._firstOpen) {
      this._firstOpen.reject(error || new GatewayError("closed", "the session closed before it was ready"));
      this._firstOpen = null;
    }
    for (const waiter of this._stopWaiters.splice(0)) {
      if (error && !this._wantClose) waiter.reject(error);
      else waiter.resolve(this._ended || null);
    }
    this._emit("close", { code, reason, error, willReconnect: false });
  }

  /** @param {any} data @returns {any} */
  _decode(data) {
    if (this.format === "json") {
      if (typeof data === "string") {
        try {
          return JSON.parse(data);
        } catch {
          return null;
        }
      }
      // A bare binary frame in a JSON session is TTS audio for the open synthesis.
      return { type: "tts.audio", id: this._ttsId, pcm: data };
    }
    try {
      return msgpackDecode(new Uint8Array(data));
    } catch {
      return null;
    }
  }

  /** @param {any} msg */
  _handle(msg) {
    if (typeof msg !== "object" || msg === null || typeof msg.type !== "string") return;
    const type = msg.type;
    if (type === "tts.audio") {
      msg = { ...msg, pcm: bytesToInt16(msg.pcm instanceof Uint8Array ? msg.pcm : new Uint8Array(msg.pcm || [])) };
    } else if (type === "tts.start") {
      this._ttsId = msg.id;
    } else if (type === "tts.end") {
      this._ttsId = null;
    } else if (type === "ended") {
      this._endedSeen = true;
      this._ended = msg;
    } else if (type === "pong") {
      const ping = this._pings.shift();
      if (ping) ping.resolve(performance.now() - ping.sent);
    }
    this._settle(msg);
    this._emit(type, msg);
    this._emit("message", msg);
  }

  /** Resolve or reject the request an event answers. @param {any} msg */
  _settle(msg) {
    const key = msg.id !== undefined && msg.id !== null ? String(msg.id) : null;
    const entry = key !== null ? this._pending.get(key) : undefined;
    if (!entry) {
      // Voiceprint answers may carry only the voiceprint id.
      if (key === null && msg.type.startsWith("voiceprint.")) {
        for (const [k, e] of this._pending) {
          if (e.kind === msg.type && (!e.voiceprintId || e.voiceprintId === msg.voiceprint_id)) {
            this._pending.delete(k);
            e.resolve(msg);
            break;
          }
        }
      }
      return;
    }
    if (msg.type === "error") {
      this._pending.delete(/** @type {string} */ (key));
      entry.reject(new GatewayError(msg.code, msg.message, { fatal: msg.fatal, id: msg.id }));
      return;
    }
    switch (entry.kind) {
      case "speak":
        if (msg.type === "tts.start") entry.info = msg;
        else if (msg.type === "tts.audio") entry.chunks?.push(msg.pcm);
        else if (msg.type === "tts.end") {
          this._pending.delete(/** @type {string} */ (key));
          const chunks = entry.chunks || [];
          const pcm = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
          let at = 0;
          for (const c of chunks) { pcm.set(c, at); at += c.length; }
          entry.resolve({
            id: msg.id, sampleRate: entry.info?.sample_rate ?? 0, voice: entry.info?.voice ?? "",
            durationMs: msg.duration_ms, pcm,
          });
        }
        return;
      case "translate":
        if (msg.type === "translation") { this._pending.delete(/** @type {string} */ (key)); entry.resolve(msg); }
        return;
      case "enroll":
        if (msg.type === "enrolled") { this._pending.delete(/** @type {string} */ (key)); entry.resolve(msg); }
        return;
      case "verify":
        if (msg.type === "verified") { this._pending.delete(/** @type {string} */ (key)); entry.resolve(msg); }
        return;
      default:
        if (msg.type === entry.kind) { this._pending.delete(/** @type {string} */ (key)); entry.resolve(msg); }
    }
  }

  /** @param {GatewayError} error */
  _failPending(error) {
    for (const entry of this._pending.values()) entry.reject(error);
    this._pending.clear();
    for (const ping of this._pings.splice(0)) ping.resolve(NaN);
    this._ttsId = null;
  }

  /** @param {Record<string, any>} msg @returns {boolean} whether it was sent */
  _sendMessage(msg) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(this.format === "json" ? JSON.stringify(msg) : msgpackEncode(msg));
    return true;
  }

  /** @param {string} prefix */
  _newId(prefix) {
    this._counter += 1;
    return `${prefix}${this._counter}`;
  }

  /**
   * Send a request and wait for the event that answers it.
   * @param {string} kind
   * @param {Record<string, any>} msg
   * @returns {Promise<any>}
   */
  _request(kind, msg) {
    return new Promise((resolve, reject) => {
      const id = String(msg.id);
      if (this._pending.has(id)) {
        reject(new GatewayError("bad_message", `a request with id ${id} is already waiting`));
        return;
      }
      this._pending.set(id, { resolve, reject, kind, chunks: [], voiceprintId: msg.voiceprint_id });
      if (!this._sendMessage(msg)) {
        this._pending.delete(id);
        reject(new GatewayError("closed", "the session is not connected"));
      }
    });
  }

  /** Whether the session is connected and ready for audio and requests. */
  get isOpen() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN && this.readyInfo);
  }

  /**
   * Send microphone audio: signed 16-bit mono samples at the session's `sampleRate`.
   * Audio given while the connection is down (e.g. reconnecting) is dropped.
   * @param {Int16Array} samples
   * @returns {boolean} whether it was sent
   */
  sendPcm(samples) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state === "stopping") return false;
    const maxBytes = Math.max(2, (this.readyInfo?.limits?.max_frame_bytes ?? 1 << 20) - 64) & ~1;
    const bytes = int16ToBytes(samples);
    for (let at = 0; at < bytes.length; at += maxBytes) {
      const part = bytes.subarray(at, Math.min(bytes.length, at + maxBytes));
      if (this.format === "json") ws.send(part.slice());
      else ws.send(msgpackEncode({ type: "audio", pcm: part }));
    }
    this.samplesSent += samples.length;
    return true;
  }

  /**
   * Capture a MediaStream (e.g. from getUserMedia) and stream it to the gateway
   * through an AudioWorklet, in `chunkMs` frames. Dispatches `level` events.
   * @param {MediaStream} mediaStream
   * @param {StreamOptions} [options]
   * @returns {Promise<StreamHandle>}
   */
  async sendStream(mediaStream, options = {}) {
    await this._stopCapture();
    const Ctx = globalThis.AudioContext || /** @type {any} */ (globalThis).webkitAudioContext;
    const ownContext = !options.audioContext;
    /** @type {AudioContext} */
    let context = options.audioContext || new Ctx({ sampleRate: this.sampleRate });
    /** @type {MediaStreamAudioSourceNode} */
    let source;
    try {
      source = context.createMediaStreamSource(mediaStream);
    } catch (err) {
      // Some browsers cannot capture into a context at another rate than the
      // device's: capture at the native rate and let the worklet convert.
      if (!ownContext) throw err;
      await context.close().catch(() => {});
      context = new Ctx();
      source = context.createMediaStreamSource(mediaStream);
    }
    const workletUrl = options.workletUrl || new URL("./pcm-worklet.js", import.meta.url).href;
    await context.audioWorklet.addModule(workletUrl);
    const node = new AudioWorkletNode(context, "pcm-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { chunkMs: options.chunkMs ?? 40, targetRate: this.sampleRate },
    });
    // The processor outputs silence; connecting it keeps it running in every browser.
    const mute = context.createGain();
    mute.gain.value = 0;
    source.connect(node);
    node.connect(mute);
    mute.connect(context.destination);
    node.port.onmessage = (event) => {
      const { pcm, peak, rms } = event.data;
      this.sendPcm(pcm);
      this._emit("level", { peak, rms });
    };
    if (context.state === "suspended") context.resume().catch(() => {});
    let stopped = false;
    /** @type {StreamHandle} */
    const handle = {
      context,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        node.port.postMessage({ type: "stop" });
        // Let the worklet hand over what it still holds.
        await new Promise((r) => setTimeout(r, 30));
        node.port.onmessage = null;
        source.disconnect();
        node.disconnect();
        mute.disconnect();
        if (ownContext) await context.close().catch(() => {});
        if (this._stream === handle) this._stream = null;
      },
    };
    this._stream = handle;
    return handle;
  }

  async _stopCapture() {
    const stream = this._stream;
    this._stream = null;
    if (stream) await stream.stop();
  }

  /**
   * Synthesize speech. The audio arrives as `tts.audio` events; the promise
   * resolves on `tts.end` with all of it, or rejects with the server's error.
   * @param {string} text
   * @param {{id?: string, voice?: string, language?: string}} [options]
   * @returns {Promise<SpeechResult>}
   */
  speak(text, options = {}) {
    const id = options.id ?? this._newId("speak-");
    return this._request("speak", { type: "speak", id, text, voice: options.voice, language: options.language });
  }

  /**
   * Translate text; resolves with the `translation` event.
   * @param {string} text
   * @param {{id?: string, source?: string, target: string}} options
   * @returns {Promise<any>}
   */
  translate(text, options) {
    const id = options.id ?? this._newId("translate-");
    return this._request("translate", {
      type: "translate", id, text, source: options.source, target: options.target,
    });
  }

  /**
   * Enroll the speaker of the next utterances. `consent` must be true: it records that
   * the person agreed to have a voiceprint made. Progress comes as `enroll.progress`
   * events; resolves with `enrolled`.
   * @param {{consent: boolean, label?: string, passphrase?: string | null, id?: string, needed_ms?: number}} options
   * @returns {Promise<any>}
   */
  enroll(options) {
    if (!options || options.consent !== true) {
      return Promise.reject(new GatewayError("consent_required", "enrollment needs the speaker's consent"));
    }
    const id = options.id ?? this._newId("enroll-");
    return this._request("enroll", {
      type: "enroll", id, consent: true, label: options.label || undefined,
      passphrase: options.passphrase || undefined, needed_ms: options.needed_ms,
    });
  }

  /**
   * Verify the speaker of the next utterance against a voiceprint; resolves with `verified`.
   * @param {string} voiceprintId
   * @param {{id?: string}} [options]
   * @returns {Promise<any>}
   */
  verify(voiceprintId, options = {}) {
    const id = options.id ?? this._newId("verify-");
    return this._request("verify", { type: "verify", id, voiceprint_id: voiceprintId });
  }

  /**
   * Get a voiceprint sealed by the server, to keep on the client; resolves with
   * `voiceprint.exported` (its `voiceprint` field is the sealed blob).
   * @param {string} voiceprintId
   * @returns {Promise<any>}
   */
  exportVoiceprint(voiceprintId) {
    const id = this._newId("export-");
    return this._request("voiceprint.exported", { type: "voiceprint.export", id, voiceprint_id: voiceprintId });
  }

  /**
   * Load a sealed voiceprint from an earlier session; resolves with `voiceprint.imported`.
   * @param {string | Blob} blob the sealed voiceprint (a string, or a Blob/File holding it)
   * @returns {Promise<any>}
   */
  async importVoiceprint(blob) {
    const sealed = typeof blob === "string" ? blob : (await blob.text()).trim();
    const id = this._newId("import-");
    return this._request("voiceprint.imported", { type: "voiceprint.import", id, voiceprint: sealed });
  }

  /**
   * Make the server forget a voiceprint now; resolves with `voiceprint.deleted`.
   * @param {string} voiceprintId
   * @returns {Promise<any>}
   */
  deleteVoiceprint(voiceprintId) {
    const id = this._newId("delete-");
    return this._request("voiceprint.deleted", { type: "voiceprint.delete", id, voiceprint_id: voiceprintId });
  }

  /** End the current utterance now (push-to-talk release). */
  flush() {
    return this._sendMessage({ type: "flush" });
  }

  /**
   * Protocol-level keepalive; resolves with the round trip in ms (NaN if the
   * connection closed first).
   * @returns {Promise<number>}
   */
  ping() {
    return new Promise((resolve) => {
      const entry = { resolve, sent: performance.now() };
      this._pings.push(entry);
      if (!this._sendMessage({ type: "ping" })) {
        this._pings.splice(this._pings.indexOf(entry), 1);
        resolve(NaN);
      }
    });
  }

  /**
   * Finish: stop capturing, let the server flush and deliver everything, and
   * resolve with the `ended` event (null if the session was not connected).
   * @returns {Promise<any>}
   */
  async stop() {
    this._wantClose = true;
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    await this._stopCapture();
    const ws = this.ws;
    if (!ws || this.state === "closed") {
      if (this.state !== "closed") this._finish(null, 1000, "stopped");
      return this._ended || null;
    }
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.close(1000, "stopped");
      return new Promise((resolve, reject) => this._stopWaiters.push({ resolve, reject }));
    }
    const done = new Promise((resolve, reject) => this._stopWaiters.push({ resolve, reject }));
    this._sendMessage({ type: "stop" });
    this._setState("stopping");
    return done;
  }

  /**
   * Close at once, without waiting for pending results.
   * @param {number} [code=1000]
   * @param {string} [reason]
   */
  close(code = 1000, reason = "closed by client") {
    this._wantClose = true;
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    this._stopCapture();
    if (this.ws) this.ws.close(code, reason);
    else if (this.state !== "closed") this._finish(null, code, reason);
  }
}

/**
 * Plays synthesized speech (s16le PCM chunks at any rate) through Web Audio,
 * queued one after another.
 */
export class PcmPlayer {
  /** @param {{context?: AudioContext}} [options] */
  constructor(options = {}) {
    /** @type {AudioContext | null} */
    this.context = options.context || null;
    this.nextTime = 0;
    /** @type {Set<AudioBufferSourceNode>} */
    this.playing = new Set();
  }

  /** Create or resume the context; call it from a click so that playback is allowed. */
  unlock() {
    if (!this.context) {
      const Ctx = globalThis.AudioContext || /** @type {any} */ (globalThis).webkitAudioContext;
      this.context = new Ctx();
    }
    const ctx = /** @type {AudioContext} */ (this.context);
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    return ctx;
  }

  /**
   * Queue samples after everything queued before.
   * @param {Int16Array} pcm
   * @param {number} sampleRate
   */
  enqueue(pcm, sampleRate) {
    if (!pcm.length || !sampleRate) return;
    const ctx = this.unlock();
    const buffer = ctx.createBuffer(1, pcm.length, sampleRate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 0x8000;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const at = Math.max(this.nextTime, ctx.currentTime + 0.05);
    source.start(at);
    this.nextTime = at + buffer.duration;
    this.playing.add(source);
    source.onended = () => this.playing.delete(source);
  }

  /** Seconds of audio still queued. */
  get queuedSeconds() {
    return this.context ? Math.max(0, this.nextTime - this.context.currentTime) : 0;
  }

  /** Stop everything playing or queued. */
  clear() {
    for (const source of this.playing) {
      try { source.stop(); } catch { /* already stopped */ }
    }
    this.playing.clear();
    this.nextTime = 0;
  }

  /**
   * Feed it from a session: plays every synthesis the session receives.
   * @param {GatewaySession} session
   * @returns {() => void} a function that detaches it again
   */
  attach(session) {
    /** @type {Map<string, number>} */
    const rates = new Map();
    const onStart = (/** @type {any} */ e) => rates.set(String(e.detail.id), e.detail.sample_rate);
    const onAudio = (/** @type {any} */ e) => this.enqueue(e.detail.pcm, rates.get(String(e.detail.id)) || 0);
    const onEnd = (/** @type {any} */ e) => rates.delete(String(e.detail.id));
    session.addEventListener("tts.start", onStart);
    session.addEventListener("tts.audio", onAudio);
    session.addEventListener("tts.end", onEnd);
    return () => {
      session.removeEventListener("tts.start", onStart);
      session.removeEventListener("tts.audio", onAudio);
      session.removeEventListener("tts.end", onEnd);
    };
  }
}

/**
 * Format a time on the audio clock as m:ss (or h:mm:ss).
 * @param {number} ms
 */
export function formatClock(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const s = total % 60;
  const m = Math.floor(total / 60) % 60;
  const h = Math.floor(total / 3600);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
}

/** Name of the BroadcastChannel the demo publishes captions on and the overlay reads. */
export const CAPTION_CHANNEL = "hushgate-captions";
