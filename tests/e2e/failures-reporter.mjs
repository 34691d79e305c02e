// A node:test reporter that writes one JSON line per failed test or suite: its file, its name and
// the cause in a few lines. scripts/e2e.sh uses it beside the TAP reporter to print a digest of
// the failures at the end of a run and to know which files to run a second time.
//
//   node --test --test-reporter=tap --test-reporter-destination=stdout \
//     --test-reporter=./tests/e2e/failures-reporter.mjs --test-reporter-destination=failures.jsonl …

function causeOf(error) {
  const cause = error?.cause ?? error;
  const text = String(cause?.stack ?? cause?.message ?? cause ?? 'unknown failure');
  // The first lines say what failed; wrangler's full output, when a start failed, stays in the TAP log.
  return text.split('\n').slice(0, 8).join('\n');
}

export default async function* failuresReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, nesting, details } = event.data;
    const failureType = details?.error?.failureType ?? null;
    yield `${JSON.stringify({ file: file ?? null, name, nesting, failureType, cause: causeOf(details?.error) })}\n`;
  }
}
