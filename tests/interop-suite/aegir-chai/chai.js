// `aegir/chai` for @libp2p/interop: chai 4 with the plugins aegir registers
// (promises, callable assertions such as `.exist()`, subsets, byte
// comparisons, strings), in aegir's documented order. The plugins come from
// tests/interop-suite/node_modules.
import chai from 'chai'
import chaiAsPromised from 'chai-as-promised'
import chaiParentheses from 'chai-parentheses'
import chaiSubset from 'chai-subset'
import chaiBites from 'chai-bites'
import chaiString from 'chai-string'

chai.use(chaiAsPromised)
chai.use(chaiParentheses)
chai.use(chaiSubset)
chai.use(chaiBites)
chai.use(chaiString)

export const expect = chai.expect
export const assert = chai.assert
export { chai }
