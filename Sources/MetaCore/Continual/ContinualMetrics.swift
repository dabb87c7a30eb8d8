/// The standard continual-learning summaries of a performance matrix R, where R[i][j] is the performance on
/// stage j's test set after learning stages 0 … i (j ≤ i): accuracy, or for regression a loss.
///
/// - average after stage i: the mean of R[i][0 … i], "average accuracy over all tasks seen";
/// - forgetting (Chaudhry et al. 2018): for each stage j but the last, how far its final performance
///   R[T−1][j] fell from the best it ever had, max over i in j … T−2 of R[i][j]; averaged;
/// - backward transfer (Lopez-Paz & Ranzato 2017): the mean of R[T−1][j] − R[j][j] over j < T−1.
///
/// For a loss, where lower is better, the signs are turned so that the meaning stays: positive forgetting is
/// always a loss of performance, positive backward transfer always a gain.
public struct ContinualMetrics: Sendable, Codable, Equatable {
    /// Row i holds R[i][0 … i].
    public let matrix: [[Double]]
    public let higherIsBetter: Bool

    public init(matrix: [[Double]], higherIsBetter: Bool) throws {
        guard !matrix.isEmpty else { throw MetaCoreError.argument("a performance matrix needs at least one stage") }
        for (i, row) in matrix.enumerated() where row.count != i + 1 {
            throw MetaCoreError.shape("row \(i) of the performance matrix has \(row.count) entries; after stage \(i) there are \(i + 1) stages to measure")
        }
        self.matrix = matrix
        self.higherIsBetter = higherIsBetter
    }

    /// Mean performance over the stages seen, after each stage.
    public var averages: [Double] { matrix.map { $0.reduce(0, +) / Double($0.count) } }

    /// Mean performance over all stages at the end.
    public var final: Double { averages[averages.count - 1] }

    private var sign: Double { higherIsBetter ? 1 : -1 }

    /// Average forgetting over the stages before the last (nil with one stage).
    public var forgetting: Double? {
        let last = matrix.count - 1
        guard last > 0 else { return nil }
        let drops = (0 ..< last).map { j -> Double in
            let best = (j ..< last).map { sign * matrix[$0][j] }.max()!
            return best - sign * matrix[last][j]
        }
        return drops.reduce(0, +) / Double(last)
    }

    /// Backward transfer (nil with one stage).
    public var backwardTransfer: Double? {
        let last = matrix.count - 1
        guard last > 0 else { return nil }
        return (0 ..< last).map { sign * (matrix[last][$0] - matrix[$0][$0]) }.reduce(0, +) / Double(last)
    }
}
