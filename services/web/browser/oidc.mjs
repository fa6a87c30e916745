// Signing in and out through the identity provider, in Debian's Chromium (playwright-core).
// Started by services/web/tests/it/oidc.rs, which runs the platform, the tests' own provider
// (already told whom to sign in: a coordinator of the Kamchatka center) and the cabinet.
//
// Env: BASE_URL, IDP_URL, SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium).

import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { launch, newContext, step } from './harness.mjs';

const base = process.env.BASE_URL;
const idp = process.env.IDP_URL;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const browser = await launch();

try {
  const context = await newContext(browser);
  const page = await context.newPage();
  // Every address the browser went to, to see that it passed through the provider.
  const visited = [];
  page.on('request', (request) => { if (request.isNavigationRequest()) visited.push(request.url()); });
  const blocked = [];
  page.on('console', (message) => { if (/Content Security Policy/.test(message.text())) blocked.push(message.text()); });

  await page.goto(`${base}/cabinet`);
  assert.match(page.url(), /\/cabinet\/sign-in$/, 'an anonymous visit goes to the sign-in');
  assert.equal(await page.locator('select#organization').count(), 0, 'no development sign-in');
  await page.screenshot({ path: `${shots}/oidc-sign-in.png` });
  await page.click('a:text-is("Войти")');
  await page.waitForURL(`${base}/cabinet`);
  assert.ok(visited.some((url) => url.startsWith(`${idp}/authorize?`)), `went through the provider: ${visited.join(' ')}`);
  assert.ok(visited.some((url) => url.startsWith(`${base}/cabinet/sign-in/callback?`)), 'came back with the code');
  assert.match(await page.locator('.who .org').textContent(), /КАМЧАТСКИЙ ЦЕНТР ИНФОРМАТИЗАЦИИ/);
  assert.equal((await page.locator('.who .person').textContent()).trim(), 'Смирнова Ольга Петровна · Координатор');
  assert.equal(await page.locator('h1').textContent(), 'Новые');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'pos_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax', 'an HTTP-only, SameSite session cookie');
  assert.ok(!cookies.some((c) => c.name === 'pos_pending'), 'the pending sign-in is spent');
  step('signed in through the provider as the Kamchatka center\'s coordinator');

  await page.click('button:text("Выйти")');
  await page.waitForURL(/\/cabinet\/sign-in\?signed_out=1$/);
  assert.ok(visited.some((url) => url.startsWith(`${idp}/logout?`)), 'signed out at the provider too');
  assert.match(await page.locator('.flash').textContent(), /Вы вышли/);
  assert.deepEqual(blocked, [], 'the page\'s CSP let the sign-out go to the provider');
  const after = await page.goto(`${base}/cabinet`);
  assert.match(after.url(), /\/cabinet\/sign-in$/, 'the session is gone');
  step('signed out at the cabinet and at the provider');
  console.log('DONE');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
