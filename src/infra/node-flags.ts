/**
 * V8 flags a process is started with, by entry file: every launcher (scripts/start.sh,
 * docker-compose.yml, package.json, the benchmarks, the chaos harness, the tests) passes the
 * same ones, so the programs measured and tested are the ones that run.
 *
 * The relay keeps a small heap (~17 MB live), so V8 sets its old-generation limit low and ran a
 * full mark-compact every ~0.4 s at 1,600 events/s; starting with 64 MB of old space took a
 * third off its CPU at our maximum (`bench/profile-api.ts --profile relay --node-flags=…`,
 * closed loop with the worker running: 1.6–1.7 against 2.2–2.6 CPU seconds in 10 s). The same
 * flag did nothing for the worker and nothing good for the API. Node refuses it in NODE_OPTIONS,
 * hence the command line. package.json, docker-compose.yml and scripts/start.sh cannot import
 * this and write the flags out; test/deploy-config.test.ts holds them to these.
 */
const RELAY_NODE_FLAGS = ['--initial-old-space-size=64'] as const;

/** The flags for an entry file (e.g. 'src/events/relay-main.ts'). */
export function nodeFlagsFor(entry: string): readonly string[] {
  return entry.endsWith('src/events/relay-main.ts') ? RELAY_NODE_FLAGS : [];
}
