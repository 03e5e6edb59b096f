// Writes summary.md from the mocha JSON reports of every pair.
//
//   node summary.mjs OUT_DIR ALL_TESTS_JSON PAIR...
//
// OUT_DIR holds <pair>.json (mocha's JSON reporter) and <pair>.notes.json
// (skip reasons, from interop.spec.mjs); ALL_TESTS_JSON is a --dry-run report
// listing every test the suite registers. A pair is "A-B": the suite's role
// `js` is played by A and role `go` by B. Row titles show the roles as A and B.
import fs from 'node:fs'
import path from 'node:path'

const [outDir, allTestsFile, ...pairs] = process.argv.slice(2)
if (outDir == null || allTestsFile == null || pairs.length === 0) {
  console.error('usage: node summary.mjs OUT_DIR ALL_TESTS_JSON PAIR...')
  process.exit(2)
}

const label = pair => pair.replace('-', '↔')
const roleTitle = t => t.replace(/\bjs\b/g, 'A').replace(/\bgo\b/g, 'B')
const readJson = file => { try { return JSON.parse(fs.readFileSync(file, 'utf8')) } catch { return null } }
const oneLine = (s, max = 220) => {
  const line = String(s ?? '').split('\n').map(l => l.trim()).filter(Boolean).join(' ⏎ ')
  return line.length > max ? line.slice(0, max - 1) + '…' : line
}

const allTests = readJson(allTestsFile)?.tests?.map(t => t.fullTitle) ?? []
const results = {}
const counts = {}
const failures = {}
const harnessNotes = {}

for (const pair of pairs) {
  const report = readJson(path.join(outDir, `${pair}.json`))
  const notes = readJson(path.join(outDir, `${pair}.notes.json`)) ?? { skipReasons: {} }
  const status = {}
  failures[pair] = []
  harnessNotes[pair] = []
  if (report == null) {
    counts[pair] = null
    continue
  }
  for (const t of report.passes ?? []) status[t.fullTitle] = 'pass'
  for (const t of report.pending ?? []) status[t.fullTitle] = 'skip'
  for (const t of report.failures ?? []) {
    if (allTests.includes(t.fullTitle)) {
      status[t.fullTitle] = 'fail'
      failures[pair].push({ title: t.fullTitle, message: t.err?.message })
    } else {
      // a failed hook: attribute it to the test it names, if that test has no result
      const m = /"(before|after) (all|each)" hook(?: for "(.*)")?$/.exec(t.title ?? '')
      harnessNotes[pair].push(`${t.fullTitle}: ${oneLine(t.err?.message)}`)
      if (m?.[3] != null) {
        const named = allTests.find(ft => ft.endsWith(` ${m[3]}`) && t.fullTitle.startsWith(ft.slice(0, ft.length - m[3].length - 1)))
        if (named != null && status[named] == null && m[1] === 'before') {
          status[named] = 'fail'
          failures[pair].push({ title: named, message: `${m[1]} ${m[2]} hook: ${t.err?.message}` })
        }
      }
    }
  }
  const c = { pass: 0, fail: 0, skip: 0, 'not run': 0 }
  for (const title of allTests) {
    status[title] ??= 'not run'
    c[status[title]]++
  }
  results[pair] = status
  counts[pair] = { ...c, duration: report.stats?.duration, skipReasons: notes.skipReasons ?? {} }
}

const lines = []
lines.push('# @libp2p/interop results', '')
lines.push(`Generated ${new Date().toISOString()} by tests/interop-suite/run. ` +
  'A pair A↔B runs the whole suite with its role `js` played by A and its role `go` by B, ' +
  'so a row "A sender to B listener" in the column hive↔go is hive-p2pd sending to the go daemon. ' +
  'In the baselines go↔go and js↔js both roles are the same implementation.', '')
lines.push('| pair | passing | failing | pending | not run | mocha time |', '|---|---|---|---|---|---|')
for (const pair of pairs) {
  const c = counts[pair]
  if (c == null) {
    lines.push(`| ${label(pair)} | – | – | – | – | did not run |`)
  } else {
    lines.push(`| ${label(pair)} | ${c.pass} | ${c.fail} | ${c.skip} | ${c['not run']} | ${c.duration != null ? Math.round(c.duration / 1000) + ' s' : '?'} |`)
  }
}
lines.push('')
lines.push('## Per test', '')
lines.push(`| test (A = first of the pair, B = second) | ${pairs.map(label).join(' | ')} |`)
lines.push(`|---|${pairs.map(() => '---').join('|')}|`)
// @libp2p/interop's echo matrix names a muxer in each title but passes no
// muxer option to the factory, so "mplex" cases run on the default (yamux).
const noMuxerOption = title => /\/mplex echo /.test(title)
for (const title of allTests) {
  const mark = noMuxerOption(title) ? ' ¹' : ''
  lines.push(`| ${roleTitle(title)}${mark} | ${pairs.map(p => results[p]?.[title] ?? '–').join(' | ')} |`)
}
lines.push('')
if (allTests.some(noMuxerOption)) {
  lines.push('¹ The suite passes no `muxer` option for its echo cases (only the title names mplex), ' +
    'so these run on every daemon\'s default muxer, yamux: they say nothing about mplex.', '')
}
lines.push('Client side: @libp2p/daemon-client sends no `balanced` field in STREAM_HANDLER, which hivemind\'s go daemon requires; ' +
  'the harness appends `balanced: false` to the requests of clients of the go daemon only (INTEROP_GO_BALANCED=0 turns this off).', '')
lines.push('## Failures', '')
for (const pair of pairs) {
  if (counts[pair] == null) {
    lines.push(`### ${label(pair)}`, '', 'The pair did not run (see its log).', '')
    continue
  }
  if (failures[pair].length === 0 && harnessNotes[pair].length === 0) continue
  lines.push(`### ${label(pair)}`, '')
  for (const f of failures[pair]) lines.push(`- **${roleTitle(f.title)}**: ${oneLine(f.message)}`)
  for (const n of harnessNotes[pair]) lines.push(`- hook: ${n}`)
  lines.push('')
}
lines.push('## Skip reasons', '')
lines.push('Tests the suite itself disables (`describe.skip`: pubsub.gossipsub and pubsub.hybrid) have no reason listed.', '')
for (const pair of pairs) {
  const reasons = counts[pair]?.skipReasons ?? {}
  const byReason = {}
  for (const [title, reason] of Object.entries(reasons)) {
    if (results[pair]?.[title] !== 'skip') continue
    ;(byReason[reason] ??= []).push(title)
  }
  const entries = Object.entries(byReason)
  if (entries.length === 0) continue
  lines.push(`- ${label(pair)}: ${entries.map(([r, ts]) => `${ts.length} × ${r}`).join('; ')}`)
}
lines.push('')
fs.writeFileSync(path.join(outDir, 'summary.md'), lines.join('\n'))
// per pair, each test's status and failure message, for harness/gate.mjs
fs.writeFileSync(path.join(outDir, 'results.json'), JSON.stringify({ results, failures }, null, 1))

// one line per pair for the console
for (const pair of pairs) {
  const c = counts[pair]
  console.log(c == null
    ? `${label(pair)}: did not run`
    : `${label(pair)}: ${c.pass} passing, ${c.fail} failing, ${c.skip} pending${c['not run'] ? `, ${c['not run']} not run` : ''}`)
}
