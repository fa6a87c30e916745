// What every browser script of the cabinet shares: Debian's Chromium started the same way, the
// development sign-in as one person, and the accessibility check with axe-core.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const step = (text) => console.log(`step: ${text}`);

/** Debian's Chromium (never a downloaded one), in Russian. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Root in a container has no user namespaces for the sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--lang=ru'],
    // Russian date fields (дд.мм.гггг), where Debian's chromium-l10n is installed.
    env: { ...process.env, LANGUAGE: 'ru', LANG: 'ru_RU.UTF-8' },
  });
}

/** A browser context of one person at the cabinet's usual size. */
export function newContext(browser, options = {}) {
  return browser.newContext({ locale: 'ru-RU', viewport: { width: 1360, height: 900 }, ...options });
}

/**
 * Signs in through the development sign-in as `role` of `organization`; an anonymous visit
 * must land on the sign-in page first. `screenshot` (a path) saves the sign-in form.
 */
export async function person(browser, base, organization, role, { screenshot, contextOptions } = {}) {
  const context = await newContext(browser, contextOptions);
  const page = await context.newPage();
  await page.goto(`${base}/cabinet`);
  assert.match(page.url(), /\/cabinet\/sign-in$/, 'an anonymous visit goes to the sign-in');
  await page.selectOption('#organization', organization);
  await page.check(`input[name=role][value=${role}]`);
  if (screenshot) await page.screenshot({ path: screenshot });
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/cabinet`);
  return { context, page };
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Runs axe-core in the page; fails on serious or critical violations. */
export async function accessible(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result.violations) {
    console.log(`axe ${what}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.length})`);
  }
  assert.equal(serious.length, 0, `${what}: serious accessibility violations: ${serious.map((v) => v.id).join(', ')}`);
}
