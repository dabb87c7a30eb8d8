/// The value of a component's option (an algorithm's, a task family's, a backbone's), as the command line,
/// a configuration file and a checkpoint hold it.
public enum OptionValue: Hashable, Sendable, Codable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case string(String)
    case bool(Bool)

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)"
        case .string(let v): return v
        case .bool(let v): return v ? "true" : "false"
        }
    }

    public var int: Int? { if case .int(let v) = self { v } else { nil } }
    public var double: Double? {
        switch self {
        case .float(let v): return v
        case .int(let v): return Double(v)
        default: return nil
        }
    }
    public var string: String? { if case .string(let v) = self { v } else { nil } }
    public var bool: Bool? { if case .bool(let v) = self { v } else { nil } }

    // A bare JSON value: 3, 0.5, "adam", true.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let v = try? container.decode(Bool.self) { self = .bool(v) }
        else if let v = try? container.decode(Int.self) { self = .int(v) }
        else if let v = try? container.decode(Double.self) { self = .float(v) }
        else { self = .string(try container.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let v): try container.encode(v)
        case .float(let v): try container.encode(v)
        case .string(let v): try container.encode(v)
        case .bool(let v): try container.encode(v)
        }
    }
}

/// One option a component declares: its name (the command-line flag `--NAME` and the configuration key), its
/// help text, the values it accepts and its default. Parsing and checking live here, so that the command line,
/// configuration files and checkpoints accept exactly the same values.
public struct OptionSpec: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A whole number within the range.
        case int(ClosedRange<Int>)
        /// A finite number within the range.
        case float(ClosedRange<Double>)
        /// One of the listed words.
        case choice([String])
        /// A comma-separated list of whole numbers within the range (e.g. hidden layer sizes `40,40`); where
        /// `mayBeEmpty`, the word `none` is the empty list (no hidden layers, say).
        case ints(ClosedRange<Int>, mayBeEmpty: Bool = false)
        case bool
    }

    public let name: String
    public let help: String
    public let kind: Kind
    /// `nil`: the component works out a value (from the task family, say) when none is given.
    public let defaultValue: OptionValue?
    /// Whether `metactl eval` may change it from the checkpoint's value: it shapes the test episodes only, so
    /// the trained model stays the same (see ``Evaluation/overridableSettings``).
    public let evaluationMayChange: Bool

    public init(_ name: String, _ kind: Kind, default defaultValue: OptionValue? = nil, evaluationMayChange: Bool = false,
                help: String) {
        self.name = name; self.kind = kind; self.defaultValue = defaultValue; self.help = help
        self.evaluationMayChange = evaluationMayChange
    }

    /// How an empty list is written, on the command line, in configuration files and in checkpoints.
    public static let emptyList = "none"

    /// What the help text shows for the accepted values.
    public var valueHint: String {
        switch kind {
        case .int(let r): return r.upperBound == Int.max ? "integer >= \(r.lowerBound)" : "integer \(r.lowerBound)...\(r.upperBound)"
        case .float: return "number"
        case .choice(let words): return words.joined(separator: "|")
        case .ints(_, let mayBeEmpty): return mayBeEmpty ? "N,N,...|none" : "N,N,..."
        case .bool: return "true|false"
        }
    }

    /// Parses a command-line or configuration-file word; `source` names where it came from.
    public func parse(_ text: String, source: String) throws -> OptionValue {
        func bad(_ why: String) -> MetaCoreError { MetaCoreError.argument("\(source): '\(text)' is not a valid value for \(name): \(why)") }
        let word = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .int:
            guard let v = Int(word) else { throw bad("expected \(valueHint)") }
            return try check(.int(v), source: source)
        case .float:
            guard let v = Double(word) else { throw bad("expected a number") }
            return try check(.float(v), source: source)
        case .choice:
            return try check(.string(word), source: source)
        case .ints(_, let mayBeEmpty):
            if mayBeEmpty, word.lowercased() == OptionSpec.emptyList { return .string(OptionSpec.emptyList) }
            let parts = word.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { throw bad("expected whole numbers separated by commas") }
            return try check(.string(parts.map { String($0!) }.joined(separator: ",")), source: source)
        case .bool:
            switch word.lowercased() {
            case "true", "yes", "1", "on": return .bool(true)
            case "false", "no", "0", "off": return .bool(false)
            default: throw bad("expected true or false")
            }
        }
    }

    /// Checks a value of any origin (a checkpoint's, a file's) against the option's kind and range, converting
    /// a whole number where a number is expected.
    public func check(_ value: OptionValue, source: String) throws -> OptionValue {
        func bad(_ why: String) -> MetaCoreError { MetaCoreError.argument("\(source): \(name) \(why), got \(value)") }
        switch (kind, value) {
        case (.int(let range), .int(let v)):
            guard range.contains(v) else { throw bad("must be \(valueHint)") }
            return value
        case (.float(let range), _):
            guard let v = value.double, v.isFinite, range.contains(v) else {
                throw bad("must be a finite number in \(range.lowerBound)...\(range.upperBound)")
            }
            return .float(v)
        case (.choice(let words), .string(let v)):
            guard words.contains(v) else { throw bad("must be one of \(words.joined(separator: ", "))") }
            return value
        case (.ints(let range, let mayBeEmpty), .string(let v)):
            if mayBeEmpty, v == OptionSpec.emptyList { return value }
            let parts = v.split(separator: ",").map { Int($0) }
            guard !parts.isEmpty, parts.allSatisfy({ $0.map(range.contains) == true }) else {
                throw bad("must be whole numbers \(range.lowerBound)...\(range.upperBound) separated by commas")
            }
            return value
        case (.bool, .bool): return value
        default: throw bad("must be \(valueHint)")
        }
    }
}

/// The options of the components a run uses, resolved: a value given explicitly, else the default the task
/// family sets for this option, else the component's own default.
public struct ResolvedOptions: Sendable {
    let given: [String: OptionValue]
    let specs: [String: OptionSpec]
    let familyDefaults: [String: OptionValue]

    public func value(_ name: String) -> OptionValue? {
        precondition(specs[name] != nil, "option '\(name)' is not declared by the run's components")
        return given[name] ?? familyDefaults[name] ?? specs[name]!.defaultValue
    }

    public func int(_ name: String) -> Int? { value(name)?.int }
    public func double(_ name: String) -> Double? { value(name)?.double }
    public func string(_ name: String) -> String? { value(name)?.string }
    public func bool(_ name: String) -> Bool? { value(name)?.bool }
    /// A comma-separated list option as numbers.
    public func ints(_ name: String) -> [Int]? {
        string(name).map { $0 == OptionSpec.emptyList ? [] : $0.split(separator: ",").compactMap { Int($0) } }
    }
}

import Foundation
