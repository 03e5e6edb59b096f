// Compares a run with the committed baseline (tests/interop-suite/baseline.json)
// and fails when the run is worse.
//
//   node gate.mjs BASELINE_JSON RESULTS_JSON PAIR...
//
// RESULTS_JSON is written by summary.mjs. For every pair of the run:
//   - each case the baseline lists under `pass` must pass;
//   - a failing case must be listed under `fail`, with its cause (cases no
//     implementation of the pair can run, such as a transport it lacks);
//   - a case listed under `flaky` (with its cause, and how often it failed
//     when measured) may pass or fail: it is not in `pass`, and each run
//     prints its result, so a failure is seen, never hidden;
//   - a pair with no baseline fails the gate.
// A case that passes beyond the baseline is reported, not an error: add it
// to `pass` so that it stays passing. With INTEROP_GREP (a partial run),
// cases that did not run are not counted.
import fs from 'node:fs'

const [baselineFile, resultsFile, ...pairs] = process.argv.slice(2)
if (baselineFile == null || resultsFile == null || pairs.length === 0) {
  console.error('usage: node gate.mjs BASELINE_JSON RESULTS_JSON PAIR...')
  process.exit(2)
}
const baseline = JSON.parse(fs.readFileSync(baselineFile, 'utf8')).pairs
const { results, failures } = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
const partial = (process.env.INTEROP_GREP ?? '') !== ''
const label = pair => pair.replace('-', '↔')

let errors = 0
const error = line => { errors++; console.error(`   ✗ ${line}`) }
for (const pair of pairs) {
  const status = results[pair]
  const expected = baseline[pair]
  if (status == null) continue // the pair did not run: `run` reports that itself
  if (expected == null) {
    error(`${label(pair)}: no baseline in ${baselineFile}`)
    continue
  }
  const known = expected.fail ?? {}
  const flaky = expected.flaky ?? {}
  for (const title of expected.pass) {
    const got = status[title] ?? 'not run'
    if (got === 'pass' || (partial && got === 'not run')) continue
    const why = failures[pair]?.find(f => f.title === title)?.message ?? ''
    error(`${label(pair)}: "${title}" is in the baseline but ${got === 'fail' ? 'failed' : `is ${got}`}${why ? `: ${why.split('\n')[0]}` : ''}`)
  }
  for (const [title, got] of Object.entries(status)) {
    if (flaky[title] != null) {
      if (got === 'fail') console.log(`   ~ ${label(pair)}: "${title}" failed (flaky: ${flaky[title]})`)
      continue
    }
    if (got === 'fail' && known[title] == null) {
      const why = failures[pair]?.find(f => f.title === title)?.message ?? ''
      error(`${label(pair)}: "${title}" failed and is not a known failure${why ? `: ${why.split('\n')[0]}` : ''}`)
    }
    if (got === 'pass' && !expected.pass.includes(title)) {
      console.log(`   + ${label(pair)}: "${title}" passes and is not in the baseline yet`)
    }
  }
  const knownFailing = Object.keys(known).filter(t => status[t] === 'fail').length
  const flakyRun = Object.keys(flaky).filter(t => status[t] != null && status[t] !== 'not run')
  const flakyPassed = flakyRun.filter(t => status[t] === 'pass').length
  console.log(`   ${label(pair)}: ${expected.pass.length} baseline cases checked, ${knownFailing} known failures (${[...new Set(Object.values(known))].join('; ') || 'none'})` +
    (flakyRun.length > 0 ? `, flaky cases ${flakyPassed}/${flakyRun.length} passed` : ''))
}
if (errors > 0) {
  console.error(`interop-suite: ${errors} case(s) worse than ${baselineFile}`)
  process.exit(1)
}
console.log('   the run is at least as good as the baseline')
