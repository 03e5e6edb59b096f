// Mocha entry point: @libp2p/interop's whole suite (connect, relay, DHT,
// pubsub, streams) for one pair of implementations.
//
//   INTEROP_PAIR=hive-go   role `js` of the suite is hive-p2pd, role `go` is the go daemon
//   INTEROP_LOG_DIR=DIR    one log file per daemon started
//   INTEROP_NOTES=FILE     JSON written at the end: why each skipped test was skipped
//
// Two adjustments to how mocha reports, none to what is tested:
// - UnsupportedError thrown while a hook starts daemons (a configuration a
//   daemon's command line cannot express) skips the tests of that hook: the
//   suite asks factories to throw it "when necessary", and catches it itself
//   only in its connection tests.
// - Any other error in a before/beforeEach hook is reported as the failure of
//   each test that hook was preparing (mocha would report one failed hook and
//   silently drop the remaining tests of the group), so every test of every
//   pair ends as pass, fail or skip.
import './node20.mjs'
import fs from 'node:fs'
import { interopTests } from '@libp2p/interop'
import { pairFactory, stopAll } from './daemons.mjs'

const pair = process.env.INTEROP_PAIR ?? ''
const [implA, implB] = pair.split('-')
if (implA == null || implB == null) {
  throw new Error(`INTEROP_PAIR must be A-B with A and B among hive, go, js (got ${JSON.stringify(pair)})`)
}

const ALL_ERROR = Symbol('before all failed')
const EACH_ERROR = Symbol('before each failed')
const skipReasons = {}
let unsupportedInHook = null

const factory = pairFactory(implA, implB, { logDir: process.env.INTEROP_LOG_DIR })
const spawn = factory.spawn
factory.spawn = async (options) => {
  try {
    return await spawn(options)
  } catch (err) {
    if (err?.name === 'UnsupportedError') unsupportedInHook ??= `${options.type === 'go' ? implB : implA}: ${err.message}`
    throw err
  }
}

function testsOf (suite) {
  return [...suite.tests, ...suite.suites.flatMap(testsOf)]
}

function wrapHook (original, slot) {
  const wrapped = function (titleOrFn, maybeFn) {
    const fn = typeof titleOrFn === 'function' ? titleOrFn : maybeFn
    const hook = async function () {
      const suite = this.test.parent
      if (slot === EACH_ERROR) suite[EACH_ERROR] = undefined
      unsupportedInHook = null
      try {
        await fn.call(this)
      } catch (err) {
        if (err?.name === 'UnsupportedError') {
          const targets = slot === EACH_ERROR ? [this.currentTest] : testsOf(suite)
          for (const t of targets) if (t != null) skipReasons[t.fullTitle()] = unsupportedInHook ?? err.message
          this.skip()
        }
        suite[slot] = err
        return
      }
      if (unsupportedInHook != null) {
        // the suite caught UnsupportedError itself and will skip its tests
        const targets = slot === EACH_ERROR ? [this.currentTest] : testsOf(suite)
        for (const t of targets) if (t != null) skipReasons[t.fullTitle()] = unsupportedInHook
      }
    }
    return typeof titleOrFn === 'function' ? original(hook) : original(titleOrFn, hook)
  }
  return Object.assign(wrapped, original)
}

function setupError (suite) {
  for (let s = suite; s != null; s = s.parent) {
    if (s[EACH_ERROR] != null) return s[EACH_ERROR]
    if (s[ALL_ERROR] != null) return s[ALL_ERROR]
  }
  return null
}

function wrapIt (original) {
  const wrapped = function (title, fn) {
    if (typeof fn !== 'function') return original(title, fn)
    return original(title, async function () {
      const err = setupError(this.test.parent)
      if (err != null) {
        const failure = new Error(`setup failed: ${err.message ?? err}`)
        failure.stack = `${failure.message}\n--- setup error ---\n${err.stack ?? ''}`
        throw failure
      }
      return fn.call(this)
    })
  }
  return Object.assign(wrapped, original)
}

globalThis.before = wrapHook(globalThis.before, ALL_ERROR)
globalThis.beforeEach = wrapHook(globalThis.beforeEach, EACH_ERROR)
globalThis.it = wrapIt(globalThis.it)

function writeNotes () {
  if (process.env.INTEROP_NOTES == null) return
  fs.writeFileSync(process.env.INTEROP_NOTES, JSON.stringify({ pair, roles: { js: implA, go: implB }, skipReasons }, null, 2) + '\n')
}

after(async function () {
  this.timeout(10000)
  await stopAll()
  writeNotes()
})
process.on('exit', writeNotes)

await interopTests(factory)
