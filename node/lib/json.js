'use strict';
// JSON payloads: one encoding for every language, UTF-8 JSON text.

/** A short name of `value`'s type for messages: 'object', 'array', 'Map', 'bigint', … */
function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') {
    const ctor = Object.getPrototypeOf(value)?.constructor;
    return ctor && ctor !== Object && typeof ctor.name === 'string' && ctor.name ? ctor.name : 'object';
  }
  return typeof value;
}

/**
 * `value` as UTF-8 JSON; `undefined` is encoded as `null`. Throws a TypeError
 * saying why for what JSON cannot hold (a function, a symbol, a BigInt, a cycle).
 */
function encode(value, what) {
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new TypeError(`${what} cannot be encoded as JSON: ${err.message}`, { cause: err });
  }
  if (text === undefined) throw new TypeError(`${what} cannot be encoded as JSON (it is a ${typeName(value)})`);
  return Buffer.from(text, 'utf8');
}

/** Parses UTF-8 JSON; throws the SyntaxError of JSON.parse (an empty payload is not JSON). */
function decode(buf) {
  return JSON.parse(buf.toString('utf8'));
}

module.exports = { encode, decode, typeName };
