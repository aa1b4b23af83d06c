// Opens a box game's web build (DEMO_EXAMPLE: box_game or replicon_boxes) in two headless Chromium browsers: one hosts, one joins (both
// with `auto`, so their boxes move by themselves). Passes when each page has logged that the
// other connected and that it received the other's box positions; saves a screenshot of each.
//
// Env: DEMO_URL (the served index.html), SIGNAL_URL, DEMO_OUT_DIR, CHROMIUM (default
// /usr/bin/chromium), DEMO_TIMEOUT_S (default 120). Run by tests/web-demo.
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";

const example = process.env.DEMO_EXAMPLE ?? "box_game";
const base = process.env.DEMO_URL ?? "http://127.0.0.1:8080/index.html";
const signal = process.env.SIGNAL_URL ?? "ws://127.0.0.1:3536";
const out = process.env.DEMO_OUT_DIR ?? "target/web-demo";
const timeout = Number(process.env.DEMO_TIMEOUT_S ?? 120) * 1000;
mkdirSync(out, { recursive: true });

// One browser per player, as in real life. Pages of one Chromium share its GPU process, and with
// software rendering (SwiftShader) a second page's WebGL calls wait behind the first page's
// frames: on Bevy 0.20 the second page's main thread stalled for 8-14 s at start, long enough for
// its join to time out before its WebSocket's first message was even handled.
const launch = () => chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    // WebGL2 without a GPU.
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
  ],
});

const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1) + " s";

const browsers = [];
async function open(name, query) {
  const browser = await launch();
  browsers.push(browser);
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => {
    const text = m.text();
    log.push(text);
    if (text.includes(`${example}:`) || m.type() === "error") {
      console.log(`[${name} ${elapsed()}] ${text}`);
    }
  });
  page.on("websocket", (ws) => {
    console.log(`[${name} ${elapsed()}] websocket ${ws.url()} open`);
    ws.on("close", () => console.log(`[${name} ${elapsed()}] websocket closed`));
  });
  page.on("pageerror", (e) => console.log(`[${name} ${elapsed()}] page error: ${e}`));
  const url = `${base}?${query}&signal=${encodeURIComponent(signal)}&auto&loopback`;
  console.log(`[${name}] ${url}`);
  await page.goto(url);
  return { name, page, log };
}

const host = await open("host", "host&room=webdemo");
// The joiner opens once the host's room exists (a joiner without a host keeps trying anyway).
const hostReady = () => host.log.some((l) => l.includes(`${example}: hosting`));
while (!hostReady() && Date.now() - started < timeout) {
  await new Promise((r) => setTimeout(r, 200));
}
const joiner = await open("joiner", "join&room=webdemo");

const sawConnect = (p) => p.log.some((l) => l.includes(`${example}: connected`));
const sawPositions = (p) => p.log.some((l) => l.includes(`${example}: position from`));
const done = () => [host, joiner].every((p) => sawConnect(p) && sawPositions(p));
while (!done() && Date.now() - started < timeout) {
  await new Promise((r) => setTimeout(r, 250));
}
// Let a few more frames render so the screenshots show both boxes and the HUD's round trips.
await new Promise((r) => setTimeout(r, 3000));
for (const p of [host, joiner]) {
  await p.page.screenshot({ path: `${out}/${p.name}.png` });
  writeFileSync(`${out}/${p.name}.log`, p.log.join("\n") + "\n");
}
const ok = done();
for (const p of [host, joiner]) {
  console.log(
    `${p.name}: connected ${sawConnect(p)}, received positions ${sawPositions(p)}; ` +
      `screenshot ${out}/${p.name}.png`
  );
}
for (const browser of browsers) await browser.close();
if (!ok) {
  console.log(`FAILED after ${elapsed()}: not every page saw the other connect and move`);
  process.exit(1);
}
console.log(`ok in ${elapsed()}`);
