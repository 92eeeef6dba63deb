// polygeard dashboard: polls /api/status every 2 s and draws it. No framework,
// no build step; every value goes through textContent (never innerHTML).
'use strict';
(function () {
  const TOKEN_KEY = 'polygeard-admin-token';
  const $ = (id) => document.getElementById(id);
  let jobsFunction = null;
  let last = null;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
  function showTokenState() {
    $('token-state').textContent = token() ? 'token set for this tab' : 'no token';
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el('td', c));
    return tr;
  }
  function td(child) { const t = document.createElement('td'); t.appendChild(child); return t; }
  function replaceBody(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }
  function fmtMs(ms) {
    if (ms < 1000) return ms + ' ms';
    if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
    return Math.round(ms / 60000) + ' min';
  }

  function say(text, ok) {
    const r = $('action-result');
    r.textContent = text;
    r.className = ok ? 'ok' : 'err';
  }

  async function act(path, body) {
    const headers = { 'Content-Type': 'application/json' };
    if (token()) headers.Authorization = 'Bearer ' + token();
    let res;
    try {
      res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
    } catch (e) {
      say('request failed: ' + e, false);
      return false;
    }
    let reply = {};
    try { reply = await res.json(); } catch (e) { /* not JSON */ }
    if (res.ok) return true;
    say(res.status + ' ' + (reply.error || res.statusText), false);
    if (res.status === 403 && !token()) $('token').focus();
    return false;
  }

  async function cancel(handle) {
    if (await act('/api/cancel', { handle })) {
      say('cancelled ' + handle, true);
      await refresh();
    }
  }
  async function drop(name) {
    if (await act('/api/drop', { function: name })) {
      say('dropped function ' + name, true);
      await refresh();
    }
  }

  function button(text, cls, onclick) {
    const b = el('button', text, cls);
    b.type = 'button';
    b.addEventListener('click', onclick);
    return b;
  }

  function drawFunctions(s) {
    const rows = s.functions.map((f) => {
      const q = f.queued;
      const tr = row([
        el('td', f.name, 'text fn-name'),
        el('td', q.high, 'q-high'), el('td', q.normal, 'q-normal'), el('td', q.low, 'q-low'),
        el('td', f.running, 'running'), el('td', f.workers, 'workers'),
        el('td', f.submitted), el('td', f.completed, 'completed'), el('td', f.failed, 'failed'),
      ]);
      tr.dataset.function = f.name;
      const actions = document.createElement('td');
      if (q.high + q.normal + q.low > 0) {
        actions.appendChild(button('jobs', 'show-jobs', () => { jobsFunction = f.name; refreshJobs(); }));
      }
      if (q.high + q.normal + q.low + f.running === 0 && f.workers === 0) {
        actions.appendChild(button('drop', 'drop', () => drop(f.name)));
        tr.className = 'idle';
      }
      tr.appendChild(actions);
      return tr;
    });
    replaceBody($('functions'), rows);
    $('functions-omitted').textContent = s.functions_omitted ? s.functions_omitted + ' more functions not shown' : '';
  }

  function drawWorkers(s) {
    replaceBody($('workers'), s.workers.map((w) => row([
      w.fd, el('td', w.client_id, 'text'), el('td', w.address, 'text'), w.running,
      el('td', w.functions.join(' '), 'text'),
    ])));
  }

  function drawFailures(s) {
    replaceBody($('failures'), s.failures.map((f) => row([
      el('td', new Date(f.time_ms).toLocaleTimeString(), 'text'), el('td', f.function, 'text'),
      el('td', f.handle, 'text'), el('td', f.outcome, 'text'), el('td', f.message, 'text'),
    ])));
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function chart(svg, samples, series, per) {
    svg.replaceChildren();
    const W = 600, H = 160, n = 120;
    let max = 0;
    for (const s of samples) for (const [key] of series) max = Math.max(max, s[key] / per);
    max = max > 0 ? max * 1.1 : 1;
    const x0 = n - samples.length;
    const x = (i) => (x0 + i) * (W - 4) / (n - 1) + 2;
    const y = (v) => H - 2 - (v / per) * (H - 14) / max;
    series.forEach(([key, cls]) => {
      const p = document.createElementNS(SVG, 'polyline');
      p.setAttribute('class', cls);
      p.setAttribute('points', samples.map((s, i) => x(i).toFixed(1) + ',' + y(s[key]).toFixed(1)).join(' '));
      svg.appendChild(p);
      if (samples.length) {
        // The latest value as a dot (a single sample draws no line).
        const c = document.createElementNS(SVG, 'circle');
        c.setAttribute('class', cls);
        c.setAttribute('cx', x(samples.length - 1).toFixed(1));
        c.setAttribute('cy', y(samples[samples.length - 1][key]).toFixed(1));
        c.setAttribute('r', 2.5);
        svg.appendChild(c);
      }
    });
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', 4); t.setAttribute('y', 12);
    t.textContent = 'max ' + (max / 1.1).toFixed(max < 10 ? 2 : 0) + ' · last 10 min';
    svg.appendChild(t);
  }

  function draw(s) {
    last = s;
    $('version').textContent = s.version;
    const queued = s.functions.reduce((a, f) => a + f.queued.high + f.queued.normal + f.queued.low, 0);
    $('summary').textContent = s.connections + ' connections · ' + s.jobs + ' jobs (' + queued + ' queued) · '
      + s.submitted + ' submitted, ' + s.completed + ' completed, ' + s.failed + ' failed · updated '
      + new Date(s.time_ms).toLocaleTimeString();
    $('actions-disabled').hidden = s.actions.token_configured;
    drawFunctions(s);
    drawWorkers(s);
    drawFailures(s);
    chart($('chart-throughput'), s.samples, [['completed', 's1'], ['submitted', 's2'], ['failed', 's3']], s.sample_seconds);
    chart($('chart-latency'), s.samples, [['run_ms', 's1'], ['wait_ms', 's2']], 1);
  }

  async function refreshJobs() {
    const panel = $('jobs-panel');
    if (jobsFunction === null) { panel.hidden = true; return; }
    let r;
    try {
      r = await fetch('/api/jobs?function=' + encodeURIComponent(jobsFunction));
    } catch (e) { return; }
    if (!r.ok) { jobsFunction = null; panel.hidden = true; return; }
    const j = await r.json();
    panel.hidden = false;
    $('jobs-function').textContent = j.function;
    replaceBody($('jobs'), j.jobs.map((job) => {
      const tr = row([
        el('td', job.handle, 'text handle'), job.priority, el('td', job.unique, 'text'), job.data_bytes,
        fmtMs(job.waiting_ms), job.durable ? 'yes' : 'no',
      ]);
      tr.dataset.handle = job.handle;
      tr.appendChild(td(button('cancel', 'cancel', () => cancel(job.handle))));
      return tr;
    }));
  }

  async function refresh() {
    try {
      const r = await fetch('/api/status', { cache: 'no-store' });
      if (r.ok) draw(await r.json());
      else $('summary').textContent = 'status: HTTP ' + r.status;
    } catch (e) {
      $('summary').textContent = 'server unreachable (' + e + ')';
    }
    await refreshJobs();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token').value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    showTokenState();
  });
  $('token-clear').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); });
  $('jobs-close').addEventListener('click', () => { jobsFunction = null; $('jobs-panel').hidden = true; });
  showTokenState();
  refresh();
  setInterval(refresh, 2000);
  window.polygeardLastStatus = () => last;
})();
