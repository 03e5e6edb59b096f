// This machine runs Node 20; js-libp2p 3 targets Node 22. The one missing
// piece it needs at run time is Promise.withResolvers (Node 22 has it).
// Imported first by every entry point of the harness.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      const out = {}
      out.promise = new this((resolve, reject) => { out.resolve = resolve; out.reject = reject })
      return out
    }
  })
}
