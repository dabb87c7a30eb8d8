import Foundation

/// The metrics log a ``TrainingSession`` writes (`metactl train --log`), read back: one JSON object per line with
/// the iteration, the seconds of training so far, the mean loss (and accuracy) over the lines' interval and the
/// last meta-gradient norm.
public struct TrainingLog: Sendable {
    public struct Record: Sendable, Equatable {
        public let iteration: Int
        public let seconds: Double
        public let loss: Double
        /// For classification.
        public let accuracy: Double?
        public let gradientNorm: Double?
    }

    public let records: [Record]

    /// Parses a log's bytes; `source` names it in errors, which give the line.
    public init(decoding data: Data, source: String) throws {
        var records: [Record] = []
        for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            func bad(_ why: String) -> MetaCoreError { MetaCoreError(.corruptData, "\(source), line \(index + 1): \(why)") }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            let json: StrictJSON
            do { json = try StrictJSON.parse(line) } catch let failure as StrictJSON.Failure { throw bad("not JSON: \(failure.message)") }
            guard case .object(let members) = json else { throw bad("not a JSON object") }
            let fields = Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
            func number(_ key: String) throws -> Double? {
                guard let value = fields[key] else { return nil }
                guard case .number(let text) = value, let number = Double(text), number.isFinite else { throw bad("'\(key)' is not a finite number") }
                return number
            }
            guard let iteration = fields["iteration"]?.integer, iteration >= 0 else { throw bad("no whole, non-negative 'iteration': not a training log") }
            guard let seconds = try number("seconds"), let loss = try number("loss") else { throw bad("'seconds' or 'loss' is missing") }
            records.append(Record(iteration: iteration, seconds: seconds, loss: loss, accuracy: try number("accuracy"),
                                  gradientNorm: try number("gradient_norm")))
        }
        guard !records.isEmpty else { throw MetaCoreError(.corruptData, "\(source) holds no training-log records") }
        self.records = records
    }

    public static func read(from url: URL) throws -> TrainingLog {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw MetaCoreError(.io, "cannot read \(url.path): \(describe(error))") }
        return try TrainingLog(decoding: data, source: url.path)
    }
}
