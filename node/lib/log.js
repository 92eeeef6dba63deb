'use strict';
// The worker's log: a `logger` object with debug/info/warn/error methods
// (default `console`) and a threshold `logLevel`. With the console the
// threshold defaults to 'warn'; a logger of your own gets every line
// ('debug') and filters by its own configuration.

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'];

/** Checks `logger` / `logLevel` options and returns a `log(level, message)` function. */
function makeLog(logger, logLevel) {
  if (logger !== undefined && logger !== null) {
    if (typeof logger !== 'object' && typeof logger !== 'function') {
      throw invalidType('options.logger', 'an object with debug, info, warn and error methods', logger);
    }
    for (const level of ['debug', 'info', 'warn', 'error']) {
      if (typeof logger[level] !== 'function') {
        throw invalidType(`options.logger.${level}`, 'a function', logger[level]);
      }
    }
  }
  const target = logger || console;
  let threshold = logLevel;
  if (threshold === undefined || threshold === null) {
    threshold = logger ? 'debug' : 'warn';
  } else if (typeof threshold !== 'string' || !LEVELS.includes(threshold)) {
    const e = new RangeError(
      `The value of "options.logLevel" is out of range. It must be one of ${LEVELS.map((l) => `'${l}'`).join(', ')}. ` +
        `Received ${String(threshold)}`,
    );
    e.code = 'ERR_OUT_OF_RANGE';
    throw e;
  }
  const min = LEVELS.indexOf(threshold);
  return function log(level, message) {
    if (LEVELS.indexOf(level) < min) return;
    try {
      target[level](message);
    } catch {
      // a logger that throws must not break the worker
    }
  };
}

function invalidType(name, expected, value) {
  const got = value === null ? 'null' : typeof value;
  const e = new TypeError(`The "${name}" argument must be ${expected}. Received ${got}`);
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

module.exports = { makeLog, LEVELS };
