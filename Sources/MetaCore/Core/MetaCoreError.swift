/// Every recoverable failure MetaCore reports. The message names the problem and the values involved.
public struct MetaCoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What kind of problem it is, for callers that branch on it.
    public enum Kind: String, Sendable {
        case shapeMismatch, invalidArgument, emptyBatch, invalidLabel, unknownName
        case missingData, corruptData, io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func shape(_ message: String) -> MetaCoreError { MetaCoreError(.shapeMismatch, message) }
    static func argument(_ message: String) -> MetaCoreError { MetaCoreError(.invalidArgument, message) }
}

/// `[1, 28, 28]` as "1x28x28" for error messages.
func describe(_ shape: [Int]) -> String { shape.isEmpty ? "scalar" : shape.map(String.init).joined(separator: "x") }

extension MetaCoreError {
    /// Any error as a sentence for a user: a MetaCoreError's message, a POSIX or Foundation file error in plain
    /// words ("no such file or directory", not "NSCocoaErrorDomain 4").
    public static func message(for error: any Error) -> String { describe(error) }
}
