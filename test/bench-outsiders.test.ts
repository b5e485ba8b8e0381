/**
 * bench/cpu.ts's watchOutsiders names the CPU that processes outside the bench took while it
 * ran (a typecheck or a test run beside a phase): the bench's report then says its ratios are
 * not comparable. A busy probe process counts when it is outside the watched tree, not when it
 * is inside it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { watchOutsiders } from '../bench/cpu.ts';

const dir = mkdtempSync(join(tmpdir(), 'outsiders-'));
const PROBE = join(dir, `outsider-probe-${process.pid}.js`);
// 1 s of its own CPU time (however busy the machine is), then 0.6 s idle for the watch's
// samples to see all of it, then it exits.
writeFileSync(PROBE, 'for (let u = process.cpuUsage(); u.user + u.system < 1e6; u = process.cpuUsage());\nsetTimeout(() => {}, 600);\n');
const idle: ChildProcess[] = [];
afterAll(() => {
  for (const c of idle) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function runProbe(): Promise<void> {
  const probe = spawn(process.execPath, [PROBE], { stdio: 'ignore' });
  await new Promise((resolve) => probe.on('exit', resolve));
}
const probeSeconds = (outside: { process: string; seconds: number }[]) =>
  outside.filter((x) => x.process.includes('outsider-probe')).reduce((s, x) => s + x.seconds, 0);

it('counts a busy process outside the watched tree, even one that ended before the watch stopped', async () => {
  // The watched tree: an idle process of its own; this test process and its probe are outside it.
  const root = spawn('sleep', ['30'], { stdio: 'ignore' });
  idle.push(root);
  const watch = watchOutsiders(String(root.pid), 200);
  await runProbe();
  expect(probeSeconds(watch.stop())).toBeGreaterThanOrEqual(0.8);
});

it('does not count the watched process and what it started', async () => {
  const watch = watchOutsiders(String(process.pid), 200);
  await runProbe();
  expect(probeSeconds(watch.stop())).toBe(0);
});
