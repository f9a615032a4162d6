// Drives Warren's management UI in a real (headless) Chromium, as a person would: logs in,
// creates a queue, publishes a message and gets it back, makes traffic until the overview's
// rate chart moves, checks the phone layout, deletes the queue, and saves screenshots.
//
//   node tests/ui/browse.js BASE_URL SCREENSHOT_DIR
//
// BASE_URL is where the UI is served (http://127.0.0.1:PORT/). It needs playwright-core on
// NODE_PATH and a Chromium binary: $CHROMIUM, else /usr/bin/chromium (Debian's package;
// playwright's own browser download is never used). $WARREN_UI_USER / $WARREN_UI_PASSWORD
// override guest/guest. Prints one `ok - ...` line per step; exits 1 on the first failure.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [baseUrl, outDir] = process.argv.slice(2);
if (!baseUrl || !outDir) {
  console.error('usage: node browse.js BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
const USER = process.env.WARREN_UI_USER || 'guest';
const PASSWORD = process.env.WARREN_UI_PASSWORD || 'guest';
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
/** How long the rate chart may take to show traffic (RabbitMQ samples rates every 5 s). */
const CHART_TIMEOUT_MS = 60000;
/** Traffic made after the chart first moves, so the screenshot shows a curve. */
const EXTRA_TRAFFIC_MS = 8000;
const STEP_TIMEOUT_MS = 15000;

const queue = `ui-test-${process.pid}-${Date.now()}`;
const payload = `hello from the UI test ${Math.random().toString(36).slice(2)}`;
let step = 0;

function ok(what) {
  step += 1;
  console.log(`ok ${step} - ${what}`);
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function screenshot(page, name) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  ok(`screenshot ${file}`);
}

/** A fresh page; any uncaught error in the UI's own code fails the run. */
async function newPage(browser, options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('dialog', (dialog) => dialog.accept());
  page.on('pageerror', (error) => {
    console.error(`page error: ${error.stack || error}`);
    process.exitCode = 1;
  });
  return page;
}

async function login(page) {
  await page.goto(baseUrl);
  await page.getByTestId('login-user').fill(USER);
  await page.getByTestId('login-pass').fill(PASSWORD);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('page-overview').waitFor({ state: 'visible' });
}

async function wrongPasswordIsRefused(page) {
  await page.goto(baseUrl);
  await page.getByTestId('login-user').fill(USER);
  await page.getByTestId('login-pass').fill(`${PASSWORD}-wrong`);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('login-error').waitFor({ state: 'visible' });
  check(await page.getByTestId('page-overview').isHidden(), 'overview hidden after a wrong password');
  ok('a wrong password keeps the login form, with an error');
}

async function overviewLooksRight(page) {
  await page.getByTestId('total-queues').waitFor();
  await page.locator('[data-testid=no-alarm], [data-testid=alarm]').first().waitFor();
  ok('overview shows totals and the alarm state');
}

async function createQueue(page) {
  await page.getByTestId('nav-queues').click();
  await page.getByTestId('page-queues').waitFor({ state: 'visible' });
  await page.locator('#queue-create-vhost option[value="/"]').waitFor({ state: 'attached' });
  await page.locator('#queue-create-vhost').selectOption('/');
  await page.getByTestId('queue-create-name').fill(queue);
  await page.getByTestId('queue-create-submit').click();
  await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"]`).waitFor();
  ok(`queue ${queue} created through the form and listed`);
}

async function openQueue(page) {
  await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"] [data-testid=queue-link]`).click();
  await page.getByTestId('page-queue').waitFor({ state: 'visible' });
  await page.getByTestId('queue-ready').waitFor();
  check((await page.getByTestId('queue-title').textContent()).includes(queue), 'queue page title');
  ok('queue page opened from the list');
}

/** Publishes `body` from the queue page and waits for the broker's answer in the flash. */
async function publish(page, body) {
  await page.getByTestId('queue-publish-payload').fill(body);
  await page.getByTestId('queue-publish-submit').click();
  const flash = page.getByTestId('flash');
  await flash.filter({ hasText: 'Message published' }).waitFor({ state: 'visible' });
  const text = await flash.textContent();
  check(!text.includes('not routed'), `message routed (flash: ${text})`);
  await flash.evaluate((box) => { box.hidden = true; box.textContent = ''; });
}

async function getMessage(page, expected) {
  await page.getByTestId('queue-get-count').fill('1');
  await page.getByTestId('queue-get-submit').click();
  const got = page.getByTestId('message-payload').first();
  await got.waitFor();
  const text = await got.textContent();
  check(text === expected, `payload back is ${JSON.stringify(expected)}, got ${JSON.stringify(text)}`);
}

async function chartPeak(page) {
  return Number(await page.getByTestId('rate-chart').getAttribute('data-max'));
}

/**
 * Publishes from the queue page until the overview chart (polled in the background on every
 * page) records a rate above zero, then a little longer so the chart shows a curve.
 */
async function trafficMovesTheChart(page) {
  const start = Date.now();
  let movedAt = null;
  let sent = 0;
  while (movedAt === null || Date.now() - movedAt < EXTRA_TRAFFIC_MS) {
    check(Date.now() - start < CHART_TIMEOUT_MS, `chart moved within ${CHART_TIMEOUT_MS} ms (sent ${sent})`);
    await publish(page, `traffic ${sent}`);
    sent += 1;
    if (movedAt === null && (await chartPeak(page)) > 0) movedAt = Date.now();
  }
  ok(`rate chart moved after ${movedAt - start} ms of traffic (${sent} messages published)`);
}

async function chartShowsRates(page) {
  await page.getByTestId('nav-overview').click();
  await page.getByTestId('page-overview').waitFor({ state: 'visible' });
  const peak = await chartPeak(page);
  const points = Number(await page.getByTestId('rate-chart').getAttribute('data-points'));
  check(peak > 0 && points >= 2, `chart has samples and a peak above 0 (points ${points}, peak ${peak})`);
  // The chart is drawn: some pixel of the plot area is the publish line's orange.
  const drawn = await page.getByTestId('rate-chart').evaluate((canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] > 200 && data[i + 1] > 90 && data[i + 1] < 140 && data[i + 2] < 80) return true;
    }
    return false;
  });
  check(drawn, 'the publish line is drawn on the canvas');
  ok(`overview chart shows rates (peak ${peak}/s over ${points} samples)`);
}

/** Every list page loads its table (or says it is empty) without an error. */
async function everyTabLoads(page) {
  for (const tab of ['connections', 'channels', 'exchanges', 'queues', 'users', 'vhosts', 'policies']) {
    await page.getByTestId(`nav-${tab}`).click();
    await page.getByTestId(`page-${tab}`).waitFor({ state: 'visible' });
    await page.locator(`#${tab}-table table, #${tab}-table [data-testid=empty]`).first().waitFor();
    const flash = page.getByTestId('flash');
    check(!(await flash.isVisible()) || (await flash.getAttribute('data-kind')) !== 'error',
      `no error on ${tab} (flash: ${await flash.textContent()})`);
  }
  ok('every list page loads');
}

/** Export downloads the definitions as JSON; importing that file back is accepted. */
async function definitionsRoundTrip(page) {
  await page.getByTestId('nav-definitions').click();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByTestId('definitions-export').click(),
  ]);
  const file = path.join(outDir, 'definitions.json');
  await download.saveAs(file);
  const definitions = JSON.parse(fs.readFileSync(file, 'utf8'));
  check(Array.isArray(definitions.queues) && Array.isArray(definitions.vhosts), 'export has queues and vhosts');
  ok(`definitions exported (${definitions.queues.length} queues)`);
  await page.locator('#definitions-import input[type=file]').setInputFiles(file);
  await page.locator('#definitions-import button').click();
  await page.getByTestId('flash').filter({ hasText: 'imported' }).waitFor({ state: 'visible' });
  fs.unlinkSync(file);
  ok('definitions imported back');
}

async function deleteQueue(page) {
  await page.goto(`${baseUrl}#/queue/%2F/${encodeURIComponent(queue)}`);
  await page.getByTestId('queue-ready').waitFor();
  await page.getByTestId('queue-delete').click();
  await page.getByTestId('page-queues').waitFor({ state: 'visible' });
  await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"]`).waitFor({ state: 'detached' });
  ok('queue deleted from its page and gone from the list');
}

async function phoneLayout(browser) {
  const page = await newPage(browser, {
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  await login(page);
  await overviewLooksRight(page);
  await page.waitForFunction(() => Number(document.querySelector('#rate-chart').dataset.points) >= 2);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  ok('phone layout fits the screen');
  await screenshot(page, 'overview-phone');
  await page.getByTestId('nav-queues').click();
  await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"]`).waitFor();
  await screenshot(page, 'queues-phone');
  await page.context().close();
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true });
  try {
    const page = await newPage(browser, { viewport: { width: 1280, height: 860 } });
    await wrongPasswordIsRefused(page);
    await screenshot(page, 'login');
    await login(page);
    ok(`logged in as ${USER}`);
    await overviewLooksRight(page);
    await createQueue(page);
    await openQueue(page);
    await publish(page, payload);
    ok('message published from the queue page');
    await getMessage(page, payload);
    ok('message got back with the same payload');
    await trafficMovesTheChart(page);
    await chartShowsRates(page);
    await screenshot(page, 'overview');
    await page.getByTestId('nav-queues').click();
    await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"]`).waitFor();
    await screenshot(page, 'queues');
    await page.locator(`#queues-table tr[data-vhost="/"][data-name="${queue}"] [data-testid=queue-link]`).click();
    await getMessage(page, 'traffic 0');
    await screenshot(page, 'queue');
    await everyTabLoads(page);
    await definitionsRoundTrip(page);
    await phoneLayout(browser);
    await deleteQueue(page);
  } finally {
    await browser.close();
  }
  if (process.exitCode) throw new Error('the page reported errors (see above)');
  console.log(`all ${step} steps ok`);
}

main().catch((error) => {
  console.error(`not ok ${step + 1} - ${error.stack || error}`);
  process.exit(1);
});
