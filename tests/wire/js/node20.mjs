// Some of js-libp2p's transitive dependencies (abort-error, mortice, it-queue)
// call Promise.withResolvers, which Node 22 has and Node 20 lacks. Imported
// first by peer.mjs; a no-op where the function exists.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
