// The report (Отчёты) in a real browser: Debian's Chromium driven by playwright-core.
// Started by services/web/tests/it/browser.rs, which runs the platform and the cabinet and first
// takes three appeals of the Kamchatka center through the services: one answered by the
// executor, one answered by the coordinator and sent back by the applicant, one left new.
// The head reaches the report from the navigation by keyboard, sets the period, reads the
// figures, filters by executor, downloads the CSV and the XLSX; an executor is not offered it.
//
// Env: BASE_URL, SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium), ZONE (the
// organization's time zone), EXPECTED (JSON: the figures of the totals, the category and the
// executors' rows, by column heading).

import { readFileSync, mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { accessible, launch, person as signIn, step } from './harness.mjs';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
const zone = process.env.ZONE;
const expected = JSON.parse(process.env.EXPECTED);
mkdirSync(shots, { recursive: true });

const browser = await launch();

function person(organization, role) {
  return signIn(browser, base, organization, role, { contextOptions: { acceptDownloads: true } });
}


/** `YYYY-MM-DD` in the organization's zone, `days` from now. */
function localDay(days) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(new Date(Date.now() + days * 86400e3));
}

/** The figures of the row named `name` in the table of `section`, by column heading. */
async function row(page, section, name) {
  const tr = page.locator(`table.report[data-section="${section}"] tbody tr`, {
    has: page.locator(`th:text-is("${name}")`),
  });
  assert.equal(await tr.count(), 1, `one row "${name}" in "${section}"`);
  return tr.locator('td').evaluateAll((cells) => Object.fromEntries(cells.map((td) => [td.dataset.column, td.textContent])));
}

function matches(actual, wanted, what) {
  for (const [column, value] of Object.entries(wanted)) {
    assert.equal(actual[column], value, `${what}: ${column}`);
  }
}

async function download(page, label) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click(`a:text-is("${label}")`)]);
  return { name: file.suggestedFilename(), bytes: readFileSync(await file.path()) };
}

try {
  const head = await person('41-kcioko', 'head');
  const h = head.page;
  // From the list to the reports by keyboard: the link is in the header's sections.
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await h.keyboard.press('Tab');
    reached = await h.evaluate(() => document.activeElement?.dataset?.section === 'reports');
  }
  assert.ok(reached, 'the reports link is reached by Tab');
  await h.keyboard.press('Enter');
  await h.waitForURL(`${base}/cabinet/reports`);
  assert.equal(await h.locator('h1').textContent(), 'Отчёты');
  step('head reached the reports by keyboard');

  // The period around today, in the organization's days; it goes into the URL.
  const from = localDay(-1);
  const to = localDay(1);
  await h.fill('#from', from);
  await h.fill('#to', to);
  await h.click('form.report-form button[type=submit]');
  await h.waitForURL(new RegExp(`from=${from}&to=${to}`));
  matches(await row(h, 'Всего', 'Все сообщения'), expected.totals, 'totals');
  matches(await row(h, 'Категория', expected.category.name), expected.category.figures, 'category');
  for (const executor of expected.executors) {
    matches(await row(h, 'Исполнитель', executor.name), executor.figures, executor.name);
  }
  const average = (await row(h, 'Всего', 'Все сообщения'))['Среднее время ответа, ч'];
  assert.match(average, /^(\d+ дн\. )?(\d+ ч )?\d+ мин$/, average);
  step(`the figures match what the services were given: ${JSON.stringify(expected.totals)}`);
  await h.screenshot({ path: `${shots}/report.png`, fullPage: true });
  await accessible(h, 'report');

  // The CSV: UTF-8 with a byte order mark, semicolons, the same figures.
  const csv = await download(h, 'Выгрузить в CSV');
  assert.match(csv.name, new RegExp(`^report_41-kcioko_${from}_${to}\\.csv$`));
  assert.deepEqual([...csv.bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'a byte order mark');
  const lines = csv.bytes.subarray(3).toString('utf8').trim().split(/\r?\n/).map((line) => line.split(';'));
  const heading = lines[0];
  const record = (section, name) => {
    const found = lines.find((cells) => cells[0] === section && cells[1] === name);
    assert.ok(found, `a CSV row ${section} / ${name}`);
    return Object.fromEntries(heading.map((title, i) => [title, found[i]]));
  };
  // A file holds numbers: a share without its sign, and nothing where the page shows a dash.
  const fileValue = (value) => (value === '—' ? '' : value.replace(/ %$/, ''));
  const inFile = (wanted) => Object.fromEntries(Object.entries(wanted).map(([k, v]) => [k, fileValue(v)]));
  matches(record('Итого', 'Все сообщения'), inFile(expected.totals), 'CSV totals');
  matches(record('Категория', expected.category.name), inFile(expected.category.figures), 'CSV category');
  for (const executor of expected.executors) {
    matches(record('Исполнитель', executor.name), inFile(executor.figures), `CSV ${executor.name}`);
  }
  step(`downloaded ${csv.name}: ${lines.length - 1} rows`);
  const xlsx = await download(h, 'Выгрузить в XLSX');
  assert.match(xlsx.name, /\.xlsx$/);
  assert.equal(xlsx.bytes.subarray(0, 2).toString('latin1'), 'PK', 'an XLSX is a zip');
  step(`downloaded ${xlsx.name}: ${xlsx.bytes.length} bytes`);

  // One executor's tickets: the filter goes into the URL and the totals follow it.
  const executor = expected.executors.find((e) => e.subject);
  await h.selectOption('#executor', executor.subject);
  await h.click('form.report-form button[type=submit]');
  await h.waitForURL(new RegExp(`executor=${executor.subject}`));
  matches(await row(h, 'Всего', 'Все сообщения'), executor.figures, 'filtered by executor');
  step(`filtered by ${executor.name}`);

  // An executor builds no reports: no link, and the address refuses.
  const other = await person('41-kcioko', 'executor');
  assert.equal(await other.page.locator('a[data-section=reports]').count(), 0, 'no reports link for an executor');
  const refused = await other.page.goto(`${base}/cabinet/reports`);
  assert.equal(refused.status(), 403);
  const refusedCsv = await other.context.request.get(`${base}/cabinet/reports.csv`);
  assert.equal(refusedCsv.status(), 403);
  step('an executor was refused the reports');
  console.log('DONE');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
