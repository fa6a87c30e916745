// The onboarding confirmation (seed 004, «Требуется подтверждение») in a real browser: Debian's
// Chromium driven by playwright-core. Started by services/web/tests/it/onboarding.rs, which runs
// the platform and the cabinet and first imports a school that is not connected yet.
//
// The school's coordinator signs in and lands on the confirmation instead of the cabinet; an
// executor of the school gets the cabinet with a banner saying who answers meanwhile; the
// coordinator confirms both steps, one form each, and lands in the cabinet; the banner is gone.
//
// Env: BASE_URL, SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium), SCHOOL (its
// id), PARENT (the short name of whoever answers for it meanwhile).

import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { accessible, launch, newContext, step } from './harness.mjs';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
const school = process.env.SCHOOL;
const parent = process.env.PARENT;
mkdirSync(shots, { recursive: true });

const browser = await launch();

/** Signs in through the development sign-in; returns the page wherever the cabinet sent it. */
async function signIn(role) {
  const context = await newContext(browser);
  const page = await context.newPage();
  await page.goto(`${base}/cabinet`);
  assert.match(page.url(), /\/cabinet\/sign-in$/, 'an anonymous visit goes to the sign-in');
  await page.selectOption('#organization', school);
  await page.check(`input[name=role][value=${role}]`);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return page;
}

try {
  // The coordinator: the confirmation, not the cabinet.
  const c = await signIn('coordinator');
  assert.equal(c.url(), `${base}/cabinet/onboarding`, 'the coordinator is asked to confirm first');
  assert.equal(await c.locator('h1').textContent(), 'Требуется подтверждение');
  const explanation = await c.locator('.onboarding-explanation').textContent();
  assert.ok(explanation.includes(`«${parent}»`), `the explanation names who answers meanwhile: ${explanation}`);
  assert.equal(await c.locator('ol.onboarding-steps form').count(), 2, 'a form per step');
  await accessible(c, 'onboarding');
  await c.screenshot({ path: `${shots}/onboarding.png`, fullPage: true });
  step('coordinator sees the confirmation with both steps');

  // Any cabinet page sends them back while the organization is not connected.
  await c.goto(`${base}/cabinet/reports`);
  assert.equal(c.url(), `${base}/cabinet/onboarding`, 'the reports wait for the confirmation too');

  // An executor of the school: the cabinet, with the banner.
  const e = await signIn('executor');
  assert.equal(e.url(), `${base}/cabinet`, 'an executor gets the cabinet');
  const banner = await e.locator('.onboarding-banner').textContent();
  assert.ok(banner.includes(`«${parent}»`), `the banner names who answers meanwhile: ${banner}`);
  step('executor sees the cabinet with the banner');

  // The first step: still not connected.
  await Promise.all([c.waitForNavigation(), c.click('li[data-step=training-done] button[type=submit]')]);
  assert.equal(c.url(), `${base}/cabinet/onboarding`);
  assert.match(await c.locator('li[data-step=training-done]').textContent(), /подтверждено/);
  assert.equal(await c.locator('ol.onboarding-steps form').count(), 1, 'one step left');
  step('coordinator confirmed the training');

  // The second: connected, and the cabinet as usual.
  await Promise.all([c.waitForNavigation(), c.click('li[data-step=cabinet-ready] button[type=submit]')]);
  assert.equal(c.url(), `${base}/cabinet`, 'both confirmed: the cabinet');
  assert.equal(await c.locator('.onboarding-banner').count(), 0);
  assert.equal(await c.locator('nav#folders').count(), 1, 'the folders are there');
  await c.screenshot({ path: `${shots}/onboarding-done.png` });
  step('coordinator confirmed the cabinet and landed in it');

  await e.reload();
  assert.equal(await e.locator('.onboarding-banner').count(), 0, 'the banner is gone once connected');
  step('executor no longer sees the banner');
  console.log('DONE');
} finally {
  await browser.close();
}
