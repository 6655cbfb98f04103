// A small MessagePack encoder and decoder for the speech gateway's wire protocol.
//
// It covers the types the protocol uses: nil, bool, integers, float64, str, bin,
// array and map. Decoding also accepts float32 and 64-bit integers (returned as
// Number when they are safe integers, else as BigInt). Extension types are refused,
// as the server refuses them.
//
// Mapping:
//   null / undefined       <-> nil (undefined map values are left out, as JSON does)
//   boolean                <-> bool
//   integral Number        <-> the smallest int / uint family member that fits
//   other Number           <-> float64
//   BigInt                  -> int64 / uint64
//   string                 <-> str (UTF-8)
//   Uint8Array, ArrayBuffer, any other ArrayBuffer view (e.g. Int16Array: its bytes)
//                          <-> bin (always decoded as Uint8Array)
//   Array                  <-> array
//   plain object, Map      <-> map (decoded as a plain object; keys must be strings)

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Raised for input that is not valid MessagePack (or uses types this module refuses). */
export class MsgpackError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "MsgpackError";
  }
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  /** @param {number} n */
  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }

  /** @param {number} b */
  u8(b) { this.ensure(1); this.buf[this.pos++] = b; }
  /** @param {number} v */
  u16(v) { this.ensure(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  /** @param {number} v */
  u32(v) { this.ensure(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  /** @param {number} v */
  i8(v) { this.ensure(1); this.view.setInt8(this.pos, v); this.pos += 1; }
  /** @param {number} v */
  i16(v) { this.ensure(2); this.view.setInt16(this.pos, v); this.pos += 2; }
  /** @param {number} v */
  i32(v) { this.ensure(4); this.view.setInt32(this.pos, v); this.pos += 4; }
  /** @param {bigint} v */
  u64(v) { this.ensure(8); this.view.setBigUint64(this.pos, v); this.pos += 8; }
  /** @param {bigint} v */
  i64(v) { this.ensure(8); this.view.setBigInt64(this.pos, v); this.pos += 8; }
  /** @param {number} v */
  f64(v) { this.ensure(8); this.view.setFloat64(this.pos, v); this.pos += 8; }
  /** @param {Uint8Array} bytes */
  bytes(bytes) { this.ensure(bytes.length); this.buf.set(bytes, this.pos); this.pos += bytes.length; }

  result() { return this.buf.slice(0, this.pos); }
}

/**
 * @param {Writer} w
 * @param {number} n
 * @param {[number, number, number, number]} codes fix-prefix (or -1 when none), 8-, 16-, 32-bit length codes (-1 when none)
 * @param {number} fixMax
 */
function writeLength(w, n, codes, fixMax) {
  const [fix, c8, c16, c32] = codes;
  if (fix >= 0 && n <= fixMax) w.u8(fix | n);
  else if (c8 >= 0 && n <= 0xff) { w.u8(c8); w.u8(n); }
  else if (n <= 0xffff) { w.u8(c16); w.u16(n); }
  else if (n <= 0xffffffff) { w.u8(c32); w.u32(n); }
  else throw new MsgpackError(`length ${n} is too large for MessagePack`);
}

/** @param {Writer} w @param {number} v */
function writeInteger(w, v) {
  if (v >= 0) {
    if (v <= 0x7f) w.u8(v);
    else if (v <= 0xff) { w.u8(0xcc); w.u8(v); }
    else if (v <= 0xffff) { w.u8(0xcd); w.u16(v); }
    else if (v <= 0xffffffff) { w.u8(0xce); w.u32(v); }
    else { w.u8(0xcf); w.u64(BigInt(v)); }
  } else {
    if (v >= -32) w.u8(v & 0xff);
    else if (v >= -0x80) { w.u8(0xd0); w.i8(v); }
    else if (v >= -0x8000) { w.u8(0xd1); w.i16(v); }
    else if (v >= -0x80000000) { w.u8(0xd2); w.i32(v); }
    else { w.u8(0xd3); w.i64(BigInt(v)); }
  }
}

/** @param {Writer} w @param {unknown} value @param {number} depth */
function write(w, value, depth) {
  if (depth > 100) throw new MsgpackError("value is nested too deeply");
  if (value === null || value === undefined) { w.u8(0xc0); return; }
  switch (typeof value) {
    case "boolean":
      w.u8(value ? 0xc3 : 0xc2);
      return;
    case "number":
      if (Number.isSafeInteger(value) && !Object.is(value, -0)) writeInteger(w, value);
      else { w.u8(0xcb); w.f64(value); }
      return;
    case "bigint":
      if (value >= 0n) {
        if (value > 0xffffffffffffffffn) throw new MsgpackError("integer is too large for MessagePack");
        if (value <= BigInt(Number.MAX_SAFE_INTEGER)) writeInteger(w, Number(value));
        else { w.u8(0xcf); w.u64(value); }
      } else {
        if (value < -0x8000000000000000n) throw new MsgpackError("integer is too small for MessagePack");
        if (value >= BigInt(Number.MIN_SAFE_INTEGER)) writeInteger(w, Number(value));
        else { w.u8(0xd3); w.i64(value); }
      }
      return;
    case "string": {
      const bytes = encoder.encode(value);
      writeLength(w, bytes.length, [0xa0, 0xd9, 0xda, 0xdb], 31);
      w.bytes(bytes);
      return;
    }
    default:
      break;
  }
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    const bytes = value instanceof ArrayBuffer
      ? new Uint8Array(value)
      : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    writeLength(w, bytes.length, [-1, 0xc4, 0xc5, 0xc6], 0);
    w.bytes(bytes);
    return;
  }
  if (Array.isArray(value)) {
    writeLength(w, value.length, [0x90, -1, 0xdc, 0xdd], 15);
    for (const item of value) write(w, item, depth + 1);
    return;
  }
  /** @type {[string, unknown][]} */
  let entries;
  if (value instanceof Map) entries = [...value.entries()];
  else if (typeof value === "object") entries = Object.entries(value);
  else throw new MsgpackError(`cannot encode a ${typeof value}`);
  entries = entries.filter(([, v]) => v !== undefined);
  writeLength(w, entries.length, [0x80, -1, 0xde, 0xdf], 15);
  for (const [k, v] of entries) {
    if (typeof k !== "string") throw new MsgpackError("map keys must be strings");
    write(w, k, depth + 1);
    write(w, v, depth + 1);
  }
}

/**
 * Encode a value as MessagePack.
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function encode(value) {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  /** @param {number} n */
  need(n) {
    if (this.pos + n > this.bytes.length) throw new MsgpackError("unexpected end of MessagePack data");
  }

  u8() { this.need(1); return this.bytes[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  i8() { this.need(1); const v = this.view.getInt8(this.pos); this.pos += 1; return v; }
  i16() { this.need(2); const v = this.view.getInt16(this.pos); this.pos += 2; return v; }
  i32() { this.need(4); const v = this.view.getInt32(this.pos); this.pos += 4; return v; }
  u64() {
    this.need(8);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  i64() {
    this.need(8);
    const v = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  f32() { this.need(4); const v = this.view.getFloat32(this.pos); this.pos += 4; return v; }
  f64() { this.need(8); const v = this.view.getFloat64(this.pos); this.pos += 8; return v; }

  /** @param {number} n */
  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** @param {number} n */
  str(n) {
    try {
      return decoder.decode(this.take(n));
    } catch (err) {
      if (err instanceof MsgpackError) throw err;
      throw new MsgpackError("string is not valid UTF-8");
    }
  }

  /** @param {number} n */
  bin(n) { return this.take(n).slice(); }

  /** @param {number} n @param {number} depth */
  array(n, depth) {
    // Every element takes at least one byte: refuse impossible lengths early.
    this.need(n);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  /** @param {number} n @param {number} depth */
  map(n, depth) {
    this.need(2 * n);
    /** @type {Record<string, unknown>} */
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== "string") throw new MsgpackError("map keys must be strings");
      const value = this.value(depth + 1);
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  /** @param {number} depth @returns {any} */
  value(depth) {
    if (depth > 100) throw new MsgpackError("MessagePack data is nested too deeply");
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f, depth);
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f, depth);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: return this.f32();
      case 0xcb: return this.f64();
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.i8();
      case 0xd1: return this.i16();
      case 0xd2: return this.i32();
      case 0xd3: return this.i64();
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default:
        if (b === 0xc1) throw new MsgpackError("0xc1 is never used in MessagePack");
        throw new MsgpackError(`MessagePack extension types are not supported (0x${b.toString(16)})`);
    }
  }
}

/**
 * Decode one MessagePack value that fills the whole input.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {any}
 */
export function decode(data) {
  const bytes = data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const reader = new Reader(bytes);
  const value = reader.value(0);
  if (reader.pos !== bytes.length) {
    throw new MsgpackError(`${bytes.length - reader.pos} extra bytes after the MessagePack value`);
  }
  return value;
}
