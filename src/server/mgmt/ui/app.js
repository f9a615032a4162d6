// Warren's management UI: one page, plain JavaScript, no build step and nothing fetched from
// outside the broker. It speaks the RabbitMQ-compatible management API under `api/` (relative,
// so the UI also works behind a path prefix) with HTTP basic auth on every request; the
// credentials live in sessionStorage only, so closing the tab logs out.
//
// Every value from the broker is put in the page with textContent, never as HTML.
'use strict';

(() => {
  const AUTH_KEY = 'warren.auth';
  const USER_KEY = 'warren.user';
  /** How often the overview (rates, totals) is polled, on every page: the chart keeps history. */
  const OVERVIEW_POLL_MS = 3000;
  /** How often the table of the page on show is refreshed. */
  const PAGE_POLL_MS = 5000;
  /** A request the broker has not answered by then fails (rather than leave a form stuck). */
  const API_TIMEOUT_MS = 30000;
  /** Samples kept for the rate chart (3 minutes at OVERVIEW_POLL_MS). */
  const CHART_POINTS = 60;
  const SERIES = [
    { key: 'publish', label: 'Publish', color: '#e8772e' },
    { key: 'deliver_get', label: 'Deliver / get', color: '#2f7ed8' },
    { key: 'ack', label: 'Ack', color: '#3aa757' },
  ];

  const state = {
    route: { page: 'overview', args: [] },
    history: [],
    overview: null,
    vhosts: [],
    timers: [],
  };

  // ---------------------------------------------------------------- helpers

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === 'onclick') node.addEventListener('click', value);
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** A path segment: vhost `/` becomes `%2F`, as the API wants. */
  const enc = (segment) => encodeURIComponent(segment);

  function fmtNum(value) {
    return typeof value === 'number' ? value.toLocaleString('en-US') : '-';
  }

  function fmtRate(value) {
    const rate = typeof value === 'number' ? value : 0;
    return `${rate < 10 ? rate.toFixed(1) : Math.round(rate).toLocaleString('en-US')}/s`;
  }

  function fmtBytes(value) {
    if (typeof value !== 'number') return '-';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let n = value;
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit += 1;
    }
    return `${n < 10 && unit > 0 ? n.toFixed(1) : Math.round(n)} ${units[unit]}`;
  }

  /** `stats.<key>_details.rate`, 0 when the broker has not seen that kind of traffic yet. */
  function rateOf(stats, key) {
    const details = stats && stats[`${key}_details`];
    return details && typeof details.rate === 'number' ? details.rate : 0;
  }

  /** The short feature flags RabbitMQ's UI shows: D(urable), AD (auto-delete), I(nternal), Args. */
  function features(item) {
    const flags = [];
    if (item.durable) flags.push('D');
    if (item.auto_delete) flags.push('AD');
    if (item.internal) flags.push('I');
    if (item.exclusive) flags.push('Excl');
    if (item.arguments && Object.keys(item.arguments).length) flags.push('Args');
    if (item.policy) flags.push(`Pol: ${item.policy}`);
    return flags.join(' ');
  }

  function parseJsonField(text, what) {
    if (!text || !text.trim()) return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not valid JSON`);
    }
  }

  let flashTimer = null;

  /** A short message at the top of the page; errors stay longer. */
  function flash(message, kind = 'ok') {
    const box = $('#flash');
    box.textContent = message;
    box.className = kind;
    box.dataset.kind = kind;
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.hidden = true; }, kind === 'error' ? 8000 : 4000);
  }

  // ---------------------------------------------------------------- API

  class Unauthorized extends Error {}

  function basic(user, password) {
    const bytes = new TextEncoder().encode(`${user}:${password}`);
    return btoa(String.fromCharCode(...bytes));
  }

  /** One API call; rejects with the broker's `reason` on an error, and logs out on 401. */
  async function api(method, path, body) {
    const headers = {
      Authorization: `Basic ${sessionStorage.getItem(AUTH_KEY) || ''}`,
      // Asks the server not to answer 401 with a basic-auth challenge, which would make the
      // browser pop up its own password dialog over the login form.
      'X-Requested-With': 'XMLHttpRequest',
    };
    const init = { method, headers, cache: 'no-store', signal: AbortSignal.timeout(API_TIMEOUT_MS) };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(`api${path}`, init);
    if (response.status === 401) {
      logout('Please log in (wrong credentials, or the session ended).');
      throw new Unauthorized('not authorized');
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) { /* not JSON: keep the text */ }
    if (!response.ok) {
      const reason = data && (data.reason || data.error);
      throw new Error(reason ? `${reason}` : `${response.status} ${response.statusText}`);
    }
    return data;
  }

  /** Runs an action from a button or form, reporting failures (other than 401) in the flash. */
  async function attempt(action) {
    try {
      return await action();
    } catch (e) {
      if (!(e instanceof Unauthorized)) flash(e.message, 'error');
      return undefined;
    }
  }

  // ---------------------------------------------------------------- tables

  /**
   * Fills `container` with a table of `rows`. `columns` are [label, cell(row)] pairs; a cell is
   * text or a node. Rows carry `data-name` (from `key(row)`) and `data-vhost` for tests. The table is rebuilt
   * only when its text changed, so a poll does not swap a button out from under a click.
   */
  function renderTable(container, columns, rows, key) {
    const cells = rows.map((row) => columns.map(([, cell]) => cell(row)));
    const signature = JSON.stringify([columns.map(([label]) => label),
      cells.map((row) => row.map((c) => (c instanceof Node ? c.textContent : c)))]);
    if (container.dataset.signature === signature) return;
    container.dataset.signature = signature;
    if (!rows.length) {
      container.replaceChildren(el('p', { class: 'empty', 'data-testid': 'empty' }, 'Nothing here yet.'));
      return;
    }
    const head = el('tr', {}, columns.map(([label]) => el('th', {}, label)));
    const body = rows.map((row, i) => el('tr', { 'data-name': key(row), 'data-vhost': row.vhost, 'data-testid': 'row' },
      cells[i].map((cell, j) => el('td', { 'data-label': columns[j][0] }, cell))));
    container.replaceChildren(el('div', { class: 'scroll' },
      el('table', {}, el('thead', {}, head), el('tbody', {}, body))));
  }

  function deleteButton(what, path, after) {
    return el('button', {
      type: 'button',
      class: 'small danger',
      'data-testid': 'delete',
      onclick: () => attempt(async () => {
        if (!window.confirm(`Delete ${what}?`)) return;
        await api('DELETE', path);
        flash(`Deleted ${what}.`);
        await after();
      }),
    }, 'Delete');
  }

  // ---------------------------------------------------------------- overview and chart

  async function pollOverview() {
    if (document.hidden || !sessionStorage.getItem(AUTH_KEY)) return;
    const overview = await api('GET', '/overview');
    state.overview = overview;
    const stats = overview.message_stats || {};
    const sample = { t: Date.now() };
    for (const series of SERIES) sample[series.key] = rateOf(stats, series.key);
    state.history.push(sample);
    if (state.history.length > CHART_POINTS) state.history.shift();
    $('#rate-publish').textContent = fmtRate(sample.publish);
    $('#rate-deliver').textContent = fmtRate(sample.deliver_get);
    $('#rate-ack').textContent = fmtRate(sample.ack);
    renderTotals(overview);
    drawChart();
  }

  function renderStats(container, entries) {
    container.replaceChildren(...entries.map(([label, value, testid]) =>
      el('div', {}, el('dt', {}, label), el('dd', { 'data-testid': testid }, value))));
  }

  function renderTotals(overview) {
    const objects = overview.object_totals || {};
    const queued = overview.queue_totals || {};
    renderStats($('#object-totals'), ['connections', 'channels', 'exchanges', 'queues', 'consumers']
      .map((k) => [k[0].toUpperCase() + k.slice(1), fmtNum(objects[k] || 0), `total-${k}`]));
    renderStats($('#queue-totals'), [
      ['Ready', fmtNum(queued.messages_ready || 0), 'total-ready'],
      ['Unacked', fmtNum(queued.messages_unacknowledged || 0), 'total-unacked'],
      ['Total', fmtNum(queued.messages || 0), 'total-messages'],
    ]);
  }

  /** The largest value worth an axis: 1, 2 or 5 times a power of ten, at least `value`. */
  function niceMax(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
  }

  /**
   * The rate chart. The canvas keeps `data-points` (samples) and `data-max` (highest rate in
   * them) so a test can tell it moved without reading pixels.
   */
  function drawChart() {
    const canvas = $('#rate-chart');
    const history = state.history;
    const peak = Math.max(0, ...history.flatMap((s) => SERIES.map((series) => s[series.key])));
    canvas.dataset.points = String(history.length);
    canvas.dataset.max = String(peak);
    if (canvas.offsetParent === null) return; // not on show: draw when it is
    const ctx = prepareCanvas(canvas);
    const { width, height } = canvas.getBoundingClientRect();
    const box = { left: 44, right: width - 8, top: 8, bottom: height - 20 };
    const top = niceMax(peak);
    drawGrid(ctx, box, top);
    SERIES.forEach((series) => drawSeries(ctx, box, top, history.map((s) => s[series.key]), series.color));
  }

  /** Sizes the canvas to its CSS box times the pixel ratio, so lines stay sharp on phones. */
  function prepareCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = canvas.getBoundingClientRect();
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return ctx;
  }

  function drawGrid(ctx, box, top) {
    ctx.strokeStyle = '#d9dde3';
    ctx.fillStyle = '#6b7280';
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(box.bottom - ((box.bottom - box.top) * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
      ctx.stroke();
      const value = (top * i) / 4;
      ctx.fillText(`${value % 1 ? value.toFixed(1) : value}/s`, box.left - 4, y);
    }
    ctx.textBaseline = 'top';
    ctx.fillText('now', box.right, box.bottom + 4);
    ctx.textAlign = 'left';
    ctx.fillText(`-${Math.round((CHART_POINTS * OVERVIEW_POLL_MS) / 60000)} min`, box.left, box.bottom + 4);
  }

  /** One series, right-aligned: the newest sample at the right edge. */
  function drawSeries(ctx, box, top, values, color) {
    if (values.length < 1) return;
    const step = (box.right - box.left) / (CHART_POINTS - 1);
    const x = (i) => box.right - (values.length - 1 - i) * step;
    const y = (v) => box.bottom - ((box.bottom - box.top) * v) / top;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.fillStyle = color;
    if (values.length === 1) { // no line yet: a dot, so the first sample shows
      ctx.beginPath();
      ctx.arc(x(0), y(values[0]), 2.5, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
  }

  function renderLegend() {
    $('#chart-legend').replaceChildren(...SERIES.map((s) =>
      el('span', {}, el('i', { style: `background:${s.color}` }), s.label)));
  }

  async function showOverview() {
    if (state.overview) renderTotals(state.overview);
    drawChart();
    const nodes = await api('GET', '/nodes');
    renderAlarms(nodes);
    renderTable($('#nodes-table'), [
      ['Name', (n) => n.name],
      ['Memory', (n) => `${fmtBytes(n.mem_used)} of ${fmtBytes(n.mem_limit)}`],
      ['Disk free', (n) => `${fmtBytes(n.disk_free)} (limit ${fmtBytes(n.disk_free_limit)})`],
      ['Uptime', (n) => (typeof n.uptime === 'number' ? `${Math.floor(n.uptime / 60000)} min` : '-')],
      ['Running', (n) => (n.running === false ? 'no' : 'yes')],
    ], nodes, (n) => n.name);
  }

  function renderAlarms(nodes) {
    const alarms = [];
    for (const node of nodes) {
      if (node.mem_alarm) alarms.push(`Memory alarm on ${node.name}: publishers are blocked.`);
      if (node.disk_free_alarm) alarms.push(`Disk alarm on ${node.name}: publishers are blocked.`);
    }
    const box = $('#alarms');
    box.replaceChildren(...alarms.map((text) => el('p', { class: 'alarm', 'data-testid': 'alarm' }, text)));
    if (!alarms.length) box.append(el('p', { class: 'no-alarm', 'data-testid': 'no-alarm' }, 'No alarms.'));
  }

  // ---------------------------------------------------------------- list pages

  async function showConnections() {
    const connections = await api('GET', '/connections');
    renderTable($('#connections-table'), [
      ['Name', (c) => c.name],
      ['Vhost', (c) => c.vhost],
      ['User', (c) => c.user],
      ['State', (c) => c.state || '-'],
      ['Channels', (c) => fmtNum(c.channels)],
      ['From client', (c) => `${fmtBytes(rateOf(c, 'recv_oct'))}/s`],
      ['To client', (c) => `${fmtBytes(rateOf(c, 'send_oct'))}/s`],
      ['', (c) => el('button', {
        type: 'button',
        class: 'small danger',
        onclick: () => attempt(async () => {
          if (!window.confirm(`Close connection ${c.name}?`)) return;
          await api('DELETE', `/connections/${enc(c.name)}`);
          flash('Connection closed.');
          await showConnections();
        }),
      }, 'Close')],
    ], connections, (c) => c.name);
  }

  async function showChannels() {
    const channels = await api('GET', '/channels');
    renderTable($('#channels-table'), [
      ['Channel', (c) => c.name],
      ['Vhost', (c) => c.vhost],
      ['User', (c) => c.user],
      ['Mode', (c) => [c.confirm ? 'C' : '', c.transactional ? 'T' : ''].join('') || '-'],
      ['State', (c) => c.state || '-'],
      ['Consumers', (c) => fmtNum(c.consumer_count)],
      ['Prefetch', (c) => fmtNum(c.prefetch_count)],
      ['Unacked', (c) => fmtNum(c.messages_unacknowledged)],
      ['Publish', (c) => fmtRate(rateOf(c.message_stats, 'publish'))],
      ['Deliver / get', (c) => fmtRate(rateOf(c.message_stats, 'deliver_get'))],
    ], channels, (c) => c.name);
  }

  /** The default exchange is `""` in listings and `amq.default` in URLs. */
  const exchangeUrlName = (name) => name || 'amq.default';

  async function showExchanges() {
    await loadVhosts();
    const exchanges = await api('GET', '/exchanges');
    renderTable($('#exchanges-table'), [
      ['Vhost', (x) => x.vhost],
      ['Name', (x) => x.name || '(AMQP default)'],
      ['Type', (x) => x.type],
      ['Features', features],
      ['In', (x) => fmtRate(rateOf(x.message_stats, 'publish_in'))],
      ['Out', (x) => fmtRate(rateOf(x.message_stats, 'publish_out'))],
      ['', (x) => (x.name === '' || x.name.startsWith('amq.') ? '' : deleteButton(`exchange ${x.name}`,
        `/exchanges/${enc(x.vhost)}/${enc(exchangeUrlName(x.name))}`, showExchanges))],
    ], exchanges, (x) => x.name);
  }

  async function showQueues() {
    await loadVhosts();
    const queues = await api('GET', '/queues');
    renderTable($('#queues-table'), [
      ['Vhost', (q) => q.vhost],
      ['Name', (q) => el('a', { href: queueHref(q.vhost, q.name), 'data-testid': 'queue-link' }, q.name)],
      ['Type', (q) => q.type || 'classic'],
      ['Features', features],
      ['State', (q) => q.state || '-'],
      ['Ready', (q) => fmtNum(q.messages_ready)],
      ['Unacked', (q) => fmtNum(q.messages_unacknowledged)],
      ['Total', (q) => fmtNum(q.messages)],
      ['Incoming', (q) => fmtRate(rateOf(q.message_stats, 'publish'))],
      ['Deliver / get', (q) => fmtRate(rateOf(q.message_stats, 'deliver_get'))],
      ['Consumers', (q) => fmtNum(q.consumers)],
    ], queues, (q) => q.name);
  }

  async function showUsers() {
    const users = await api('GET', '/users');
    renderTable($('#users-table'), [
      ['Name', (u) => u.name],
      ['Tags', (u) => (Array.isArray(u.tags) ? u.tags.join(', ') : u.tags || '')],
      ['', (u) => deleteButton(`user ${u.name}`, `/users/${enc(u.name)}`, showUsers)],
    ], users, (u) => u.name);
  }

  async function showVhosts() {
    const vhosts = await loadVhosts();
    renderTable($('#vhosts-table'), [
      ['Name', (v) => v.name],
      ['Description', (v) => v.description || (v.metadata && v.metadata.description) || ''],
      ['Ready', (v) => fmtNum(v.messages_ready)],
      ['Unacked', (v) => fmtNum(v.messages_unacknowledged)],
      ['Total', (v) => fmtNum(v.messages)],
      ['', (v) => deleteButton(`virtual host ${v.name}`, `/vhosts/${enc(v.name)}`, showVhosts)],
    ], vhosts, (v) => v.name);
  }

  async function showPolicies() {
    await loadVhosts();
    const policies = await api('GET', '/policies');
    renderTable($('#policies-table'), [
      ['Vhost', (p) => p.vhost],
      ['Name', (p) => p.name],
      ['Pattern', (p) => p.pattern],
      ['Apply to', (p) => p['apply-to']],
      ['Definition', (p) => el('code', {}, JSON.stringify(p.definition))],
      ['Priority', (p) => fmtNum(p.priority)],
      ['', (p) => deleteButton(`policy ${p.name}`, `/policies/${enc(p.vhost)}/${enc(p.name)}`, showPolicies)],
    ], policies, (p) => p.name);
  }

  /**
   * Reloads the vhost list into every vhost <select>, keeping each one's choice. The options
   * are rebuilt only when the names changed, so a poll does not close an open drop-down.
   */
  async function loadVhosts() {
    state.vhosts = await api('GET', '/vhosts');
    const names = state.vhosts.map((v) => v.name);
    for (const select of $$('.vhost-select')) {
      if (JSON.stringify(Array.from(select.options, (o) => o.value)) === JSON.stringify(names)) continue;
      const chosen = select.value;
      select.replaceChildren(...state.vhosts.map((v) => el('option', { value: v.name }, v.name)));
      if (chosen && state.vhosts.some((v) => v.name === chosen)) select.value = chosen;
    }
    return state.vhosts;
  }

  // ---------------------------------------------------------------- one queue

  const queueHref = (vhost, name) => `#/queue/${enc(vhost)}/${enc(name)}`;
  const queuePath = () => `/queues/${enc(state.route.args[0])}/${enc(state.route.args[1])}`;

  async function showQueue() {
    const [vhost, name] = state.route.args;
    $('#queue-title').textContent = `${name} (vhost ${vhost})`;
    const q = await api('GET', queuePath());
    renderStats($('#queue-details'), [
      ['Type', q.type || 'classic', 'queue-type'],
      ['Features', features(q) || '-', 'queue-features'],
      ['State', q.state || '-', 'queue-state'],
      ['Ready', fmtNum(q.messages_ready), 'queue-ready'],
      ['Unacked', fmtNum(q.messages_unacknowledged), 'queue-unacked'],
      ['Total', fmtNum(q.messages), 'queue-messages'],
      ['Consumers', fmtNum(q.consumers), 'queue-consumers'],
      ['Incoming', fmtRate(rateOf(q.message_stats, 'publish')), 'queue-rate-publish'],
      ['Deliver / get', fmtRate(rateOf(q.message_stats, 'deliver_get')), 'queue-rate-deliver'],
      ['Arguments', JSON.stringify(q.arguments || {}), 'queue-arguments'],
    ]);
  }

  async function publishToQueue(form) {
    const [vhost, name] = state.route.args;
    const properties = {};
    if (form.delivery_mode.value) properties.delivery_mode = Number(form.delivery_mode.value);
    const headers = parseJsonField(form.headers.value, 'Headers');
    if (Object.keys(headers).length) properties.headers = headers;
    const result = await api('POST', `/exchanges/${enc(vhost)}/amq.default/publish`, {
      properties,
      routing_key: name,
      payload: form.payload.value,
      payload_encoding: 'string',
    });
    flash(result && result.routed === false ? 'Message published, but not routed.' : 'Message published.');
    await showQueue();
  }

  async function getFromQueue(form) {
    const messages = await api('POST', `${queuePath()}/get`, {
      count: Math.max(1, Number(form.count.value) || 1),
      ackmode: form.ackmode.value,
      encoding: form.encoding.value,
    });
    const box = $('#get-result');
    if (!messages.length) {
      box.replaceChildren(el('p', { class: 'empty', 'data-testid': 'queue-empty' }, 'The queue is empty.'));
    } else {
      box.replaceChildren(...messages.map(renderMessage));
    }
    await showQueue();
  }

  function renderMessage(m, i) {
    return el('div', { class: 'message', 'data-testid': 'message' },
      el('h3', {}, `Message ${i + 1}`),
      el('dl', { class: 'pairs' },
        el('dt', {}, 'Exchange'), el('dd', {}, m.exchange || '(AMQP default)'),
        el('dt', {}, 'Routing key'), el('dd', {}, m.routing_key),
        el('dt', {}, 'Redelivered'), el('dd', {}, m.redelivered ? 'yes' : 'no'),
        el('dt', {}, 'Left in queue'), el('dd', {}, fmtNum(m.message_count)),
        el('dt', {}, 'Properties'), el('dd', {}, el('code', {}, JSON.stringify(m.properties || {}))),
        el('dt', {}, `Payload (${fmtNum(m.payload_bytes)} bytes, ${m.payload_encoding})`),
        el('dd', {}, el('pre', { 'data-testid': 'message-payload' }, m.payload))));
  }

  async function purgeQueue() {
    if (!window.confirm('Purge every ready message of this queue?')) return;
    await api('DELETE', `${queuePath()}/contents`);
    flash('Queue purged.');
    await showQueue();
  }

  async function deleteQueue() {
    if (!window.confirm('Delete this queue and its messages?')) return;
    await api('DELETE', queuePath());
    flash('Queue deleted.');
    window.location.hash = '#/queues';
  }

  // ---------------------------------------------------------------- forms that create things

  async function createQueue(form) {
    const vhost = form.vhost.value;
    const name = form.name.value.trim();
    await api('PUT', `/queues/${enc(vhost)}/${enc(name)}`, {
      durable: form.durable.checked,
      auto_delete: form.auto_delete.checked,
      arguments: parseJsonField(form.arguments.value, 'Arguments'),
    });
    flash(`Queue ${name} added.`);
    form.name.value = '';
    await showQueues();
  }

  async function createExchange(form) {
    const name = form.name.value.trim();
    await api('PUT', `/exchanges/${enc(form.vhost.value)}/${enc(name)}`, {
      type: form.type.value,
      durable: form.durable.checked,
      auto_delete: form.auto_delete.checked,
      internal: form.internal.checked,
      arguments: parseJsonField(form.arguments.value, 'Arguments'),
    });
    flash(`Exchange ${name} added.`);
    form.name.value = '';
    await showExchanges();
  }

  async function createUser(form) {
    const name = form.name.value.trim();
    await api('PUT', `/users/${enc(name)}`, { password: form.password.value, tags: form.tags.value.trim() });
    flash(`User ${name} saved.`);
    form.reset();
    await showUsers();
  }

  async function createVhost(form) {
    const name = form.name.value.trim();
    await api('PUT', `/vhosts/${enc(name)}`, { description: form.description.value });
    flash(`Virtual host ${name} added.`);
    form.reset();
    await showVhosts();
  }

  async function createPolicy(form) {
    const name = form.name.value.trim();
    await api('PUT', `/policies/${enc(form.vhost.value)}/${enc(name)}`, {
      pattern: form.pattern.value,
      definition: parseJsonField(form.definition.value, 'Definition'),
      priority: Number(form.priority.value) || 0,
      'apply-to': form['apply-to'].value,
    });
    flash(`Policy ${name} saved.`);
    await showPolicies();
  }

  // ---------------------------------------------------------------- definitions

  /** A download made from fetched JSON: a plain link could not send the Authorization header. */
  async function exportDefinitions() {
    const definitions = await api('GET', '/definitions');
    const blob = new Blob([JSON.stringify(definitions, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function importDefinitions(form) {
    const file = form.file.files[0];
    if (!file) throw new Error('Choose a definitions file first.');
    const definitions = parseJsonField(await file.text(), file.name);
    await api('POST', '/definitions', definitions);
    flash(`Definitions from ${file.name} imported.`);
    form.reset();
  }

  // ---------------------------------------------------------------- routing and login

  const PAGES = {
    overview: showOverview,
    connections: showConnections,
    channels: showChannels,
    exchanges: showExchanges,
    queues: showQueues,
    queue: showQueue,
    users: showUsers,
    vhosts: showVhosts,
    policies: showPolicies,
    definitions: async () => {},
  };

  /** `#/queue/%2F/orders` -> { page: 'queue', args: ['/', 'orders'] }. */
  function parseHash() {
    const parts = window.location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    const page = PAGES[parts[0]] ? parts[0] : 'overview';
    return { page, args: parts.slice(1) };
  }

  function showPage(id) {
    for (const page of $$('.page')) page.hidden = page.id !== `page-${id}`;
  }

  async function route() {
    if (!sessionStorage.getItem(AUTH_KEY)) return;
    state.route = parseHash();
    const tab = state.route.page === 'queue' ? 'queues' : state.route.page;
    for (const link of $$('#tabs a')) link.classList.toggle('active', link.dataset.tab === tab);
    showPage(state.route.page);
    if (state.route.page !== 'queue') $('#get-result').replaceChildren();
    await refreshPage();
  }

  async function refreshPage() {
    if (document.hidden || !sessionStorage.getItem(AUTH_KEY)) return;
    const page = state.route.page;
    await attempt(() => PAGES[page]());
  }

  function startPolling() {
    stopPolling();
    const overview = () => attempt(pollOverview);
    overview();
    state.timers.push(setInterval(overview, OVERVIEW_POLL_MS));
    state.timers.push(setInterval(refreshPage, PAGE_POLL_MS));
  }

  function stopPolling() {
    state.timers.forEach(clearInterval);
    state.timers = [];
  }

  async function login(user, password) {
    sessionStorage.setItem(AUTH_KEY, basic(user, password));
    const me = await api('GET', '/whoami');
    sessionStorage.setItem(USER_KEY, me.name || user);
    enterApp();
  }

  function enterApp() {
    $('#page-login').hidden = true;
    $('#tabs').hidden = false;
    $('#who').hidden = false;
    $('#who-name').textContent = sessionStorage.getItem(USER_KEY) || '';
    state.history = [];
    startPolling();
    route();
  }

  function logout(message) {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
    stopPolling();
    $('#tabs').hidden = true;
    $('#who').hidden = true;
    showPage('login');
    const error = $('#login-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('#login-user').focus();
  }

  /** Binds a form's submit to `action(form)`, with its submit button off while it runs. */
  function onSubmit(id, action) {
    const form = $(`#${id}`);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = $('button:not([type=button])', form);
      if (button) button.disabled = true;
      await attempt(() => action(form));
      if (button) button.disabled = false;
    });
  }

  function onClick(id, action) {
    $(`#${id}`).addEventListener('click', () => attempt(action));
  }

  function bind() {
    $('#login-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await login($('#login-user').value, $('#login-pass').value);
      } catch (e) {
        if (!(e instanceof Unauthorized)) logout(`Cannot log in: ${e.message}`);
        else $('#login-error').textContent = 'Login failed: wrong user name or password.';
      }
    });
    $('#logout').addEventListener('click', () => logout());
    onSubmit('queue-create', createQueue);
    onSubmit('exchange-create', createExchange);
    onSubmit('user-create', createUser);
    onSubmit('vhost-create', createVhost);
    onSubmit('policy-create', createPolicy);
    onSubmit('queue-publish', publishToQueue);
    onSubmit('queue-get', getFromQueue);
    onSubmit('definitions-import', importDefinitions);
    onClick('queue-purge', purgeQueue);
    onClick('queue-delete', deleteQueue);
    onClick('definitions-export', exportDefinitions);
    window.addEventListener('hashchange', route);
    window.addEventListener('resize', drawChart);
  }

  bind();
  renderLegend();
  if (sessionStorage.getItem(AUTH_KEY)) enterApp();
  else logout();
})();
