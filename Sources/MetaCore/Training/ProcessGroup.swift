/// The processes one run is spread over — the ranks of an MPI job (`MetaCoreMPI`'s `MPIProcessGroup`), or
/// this process alone (``SingleProcess``).
///
/// Meta-training and evaluation split their tasks into contiguous blocks, one per rank (``share(of:)``), run
/// each block on the rank's threads, and exchange the results with the collectives below. Every rank takes
/// part in every collective, in the same order: they are called only from code that every rank runs alike.
public protocol ProcessGroup: AnyObject, Sendable {
    /// This process's place in the group, `0 ..< size`.
    var rank: Int { get }
    var size: Int { get }
    /// Gathers every rank's block into every rank's `buffer`: rank r's `counts[r]` elements start at the sum of
    /// the counts before it. On entry only this rank's block need be filled in.
    func allGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws
    func allGather(_ buffer: UnsafeMutableBufferPointer<Double>, counts: [Int]) throws
    /// The elementwise sum of `buffer` over the ranks, in every rank's `buffer`.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Rank `root`'s `buffer`, in every rank's.
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Double>, from root: Int) throws
    /// Returns once every rank has called it.
    func barrier() throws
}

extension ProcessGroup {
    /// The tasks `0 ..< count` this rank runs: a contiguous block, the blocks of the ranks in rank order and
    /// within one of each other in size.
    public func share(of count: Int) -> Range<Int> { Self.share(of: count, rank: rank, size: size) }

    /// How many of `count` tasks each rank runs.
    public func shares(of count: Int) -> [Int] { (0 ..< size).map { Self.share(of: count, rank: $0, size: size).count } }

    static func share(of count: Int, rank: Int, size: Int) -> Range<Int> {
        count * rank / size ..< count * (rank + 1) / size
    }

    /// Whether this process writes what a run writes once (its log, checkpoints, progress): rank 0.
    public var isPrimary: Bool { rank == 0 }

    /// This rank's share of `count` tasks' results (``share(of:)``, one array of numbers per task, every
    /// task's of one length), gathered: every task's, in task order, on every rank.
    public func gather(_ results: [[Double]], tasks count: Int) throws -> [[Double]] {
        precondition(results.count == share(of: count).count, "rank \(rank) has \(results.count) results of its \(share(of: count).count) tasks")
        guard size > 1 else { return results }
        // The last rank's share of a positive count is never empty.
        var width = [Double(results.first?.count ?? 0)]
        try width.withUnsafeMutableBufferPointer { try broadcast($0, from: size - 1) }
        let w = Int(width[0])
        guard results.allSatisfy({ $0.count == w }) else {
            throw MetaCoreError.argument("rank \(rank)'s task results have \(Set(results.map(\.count)).sorted()) values, the last rank's \(w)")
        }
        var all = [Double](repeating: 0, count: count * w)
        let start = share(of: count).lowerBound * w
        all.replaceSubrange(start ..< start + results.count * w, with: results.joined())
        try all.withUnsafeMutableBufferPointer { try allGather($0, counts: shares(of: count).map { $0 * w }) }
        return (0 ..< count).map { Array(all[$0 * w ..< ($0 + 1) * w]) }
    }

    /// Rank 0's `flag`, on every rank.
    public func agree(_ flag: Bool) throws -> Bool {
        guard size > 1 else { return flag }
        var value = [flag ? 1.0 : 0.0]
        try value.withUnsafeMutableBufferPointer { try broadcast($0, from: 0) }
        return value[0] != 0
    }
}

/// This process alone: every collective is the identity.
public final class SingleProcess: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Double>, counts: [Int]) throws {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Double>, from root: Int) throws {}
    public func barrier() throws {}
}

/// How a meta-batch's per-task meta-gradients are combined across the ranks.
public enum GradientReduction: String, Sendable, CaseIterable, Codable {
    /// Every task's meta-gradient is gathered to every rank (an allgather) and summed there in task order:
    /// the meta-parameters are bit-identical for any number of ranks and threads, and a run resumed under
    /// another rank count continues bit for bit. Each rank receives the whole meta-batch's gradients.
    case ordered
    /// Each rank sums its own tasks in task order and the ranks' sums are added by an allreduce: a ring
    /// allreduce's traffic (twice the meta-gradient per rank, however large the meta-batch), but the result
    /// depends on the rank count through the order of that last sum (a few units in the last place).
    case sum
}
