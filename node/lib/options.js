'use strict';
// Option objects: a key the callee does not know is refused with a TypeError
// naming it and, when one is close, the option that was probably meant
// (`{ server }` for `servers` would otherwise be silently ignored).

/** Edit distance between `a` and `b` (insertions, deletions, substitutions, swaps of neighbours). */
function distance(a, b) {
  let before = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      row.push(d);
    }
    before = prev;
    prev = row;
  }
  return prev[b.length];
}

/** The known option closest to `key`, if it is a plausible typo of it. */
function nearest(key, known) {
  const lower = key.toLowerCase();
  let best;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === lower ? 0 : distance(lower, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  const tolerated = Math.max(1, Math.min(3, Math.floor(key.length / 3)));
  return bestDistance <= tolerated ? best : undefined;
}

/**
 * Throws a TypeError (code ERR_INVALID_ARG_VALUE) for the first key of
 * `options` not in `known`; `where` names the callee in the message.
 */
function rejectUnknown(where, options, known) {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const near = nearest(key, known);
    const hint = near ? ` (did you mean '${near}'?)` : `; ${where} accepts ${known.map((k) => `'${k}'`).join(', ')}`;
    const e = new TypeError(`unknown option '${key}'${hint}`);
    e.code = 'ERR_INVALID_ARG_VALUE';
    throw e;
  }
}

module.exports = { rejectUnknown, nearest };
