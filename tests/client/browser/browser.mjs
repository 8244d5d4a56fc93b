// Debian's Chromium, headless, driven by playwright-core, for the browser suite.
//
//   const browser = await launchBrowser();   // a fresh user-data-dir, removed by close()
//   const page = await browser.page({ width: 1280, height: 800 });
//   await browser.close();

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { REPO_ROOT } from "../lib/server.mjs";

export const CHROMIUM = process.env.SWITCHBOARD_CHROMIUM || "/usr/bin/chromium";
export const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

/** Where screenshots go: $SWITCHBOARD_TEST_OUTPUT, else target/test-output/screenshots. */
export function outputDir() {
  const dir = process.env.SWITCHBOARD_TEST_OUTPUT || join(REPO_ROOT, "target", "test-output", "screenshots");
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function launchBrowser() {
  const profile = mkdtempSync(join(process.env.TMPDIR || tmpdir(), "switchboard-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: DESKTOP,
  });
  context.setDefaultTimeout(10_000);
  // Whatever a page logs as an error (CSP violations, exceptions) fails the suite.
  const problems = [];
  return {
    context,
    problems,
    async page(viewport = DESKTOP) {
      const page = await context.newPage();
      await page.setViewportSize(viewport);
      page.on("pageerror", (err) => problems.push(`${page.url()}: ${err.message}`));
      page.on("console", (msg) => {
        // A refused connection while the server restarts is expected, and logged by Chromium itself.
        if (msg.type() === "error" && !/WebSocket connection to .* failed/.test(msg.text())) {
          problems.push(`${page.url()}: ${msg.text()}`);
        }
      });
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The widget's messages as the customer sees them, in DOM order. */
export function widgetMessages(page) {
  return page.evaluate(() =>
    [...document.querySelector("#switchboard-widget").shadowRoot.querySelectorAll("ol li[data-id]")].map((li) => ({
      id: li.dataset.id,
      offset: Number(li.dataset.offset),
      text: li.querySelector(".text").textContent,
    })),
  );
}

/** The agent view's messages, in DOM order. */
export function agentMessages(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#messages li[data-id]")].map((li) => ({
      id: li.dataset.id,
      offset: Number(li.dataset.offset),
      text: li.querySelector(".text").textContent,
    })),
  );
}
