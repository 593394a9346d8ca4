// js-libp2p 3 calls Promise.withResolvers (Node 22+); Node 20 lacks it. Imported first by
// run.js, before any libp2p module.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}
