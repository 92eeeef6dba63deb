'use strict';
// SIGINT / SIGTERM while workers work: one process listener per signal,
// shared by every working Worker (no listener pile-up with many workers).
// The first signal stops them gracefully; a second one, while they still
// drain, removes the listeners and re-raises it (Node's default: exit).

const SIGNALS = ['SIGINT', 'SIGTERM'];

/** Workers working with signal handling: { first(sig), again(sig) }. */
const trapped = new Set();
const listeners = new Map();
let signalled = false;

function onSignal(sig) {
  const workers = [...trapped];
  if (signalled) {
    for (const w of workers) w.again(sig);
    uninstall();
    process.kill(process.pid, sig);
    return;
  }
  signalled = true;
  for (const w of workers) w.first(sig);
}

function uninstall() {
  for (const [sig, fn] of listeners) process.removeListener(sig, fn);
  listeners.clear();
}

/** Adds `handler` ({ first(sig), again(sig) }); returns the function that removes it. */
function trap(handler) {
  trapped.add(handler);
  if (listeners.size === 0) {
    for (const sig of SIGNALS) {
      const fn = () => onSignal(sig);
      listeners.set(sig, fn);
      process.on(sig, fn);
    }
  }
  return () => {
    trapped.delete(handler);
    if (trapped.size === 0) {
      uninstall();
      signalled = false;
    }
  };
}

module.exports = { trap };
