/// A strict JSON reader for file headers that may be hostile: UTF-8 only, no duplicate keys in an object, a
/// bounded nesting depth, and numbers kept as their text so that whole numbers are read exactly (or refused).
/// Foundation's reader accepts duplicate keys (the last silently wins) and other encodings.
enum StrictJSON: Equatable {
    case object([(key: String, value: StrictJSON)])
    case array([StrictJSON])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    static func == (a: StrictJSON, b: StrictJSON) -> Bool {
        switch (a, b) {
        case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.array(let x), .array(let y)): return x == y
        case (.string(let x), .string(let y)), (.number(let x), .number(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    struct Failure: Error { let message: String }

    static let maximumDepth = 32

    /// Parses `bytes`, which must be one JSON value (white space around it allowed, trailing spaces as
    /// safetensors pads with).
    static func parse<Bytes: Collection>(_ bytes: Bytes) throws -> StrictJSON where Bytes.Element == UInt8 {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Failure(message: "the header is not UTF-8 text") }
        var parser = Parser(scalars: Array(text.unicodeScalars))
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == parser.scalars.count else { throw Failure(message: "unexpected text after the JSON value at character \(parser.position)") }
        return value
    }

    /// The value as a whole number, if it is one that fits an `Int` (no fraction, no exponent).
    var integer: Int? {
        guard case .number(let text) = self, !text.contains(where: { ".eE".contains($0) }) else { return nil }
        return Int(text)
    }

    private struct Parser {
        let scalars: [Unicode.Scalar]
        var position = 0

        mutating func skipSpace() {
            while position < scalars.count, [" ", "\t", "\n", "\r"].contains(scalars[position]) { position += 1 }
        }

        func fail(_ what: String) -> Failure { Failure(message: "\(what) at character \(position)") }

        mutating func expect(_ word: String) throws {
            for scalar in word.unicodeScalars {
                guard position < scalars.count, scalars[position] == scalar else { throw fail("expected '\(word)'") }
                position += 1
            }
        }

        mutating func value(depth: Int) throws -> StrictJSON {
            guard depth < StrictJSON.maximumDepth else { throw fail("nesting deeper than \(StrictJSON.maximumDepth) levels") }
            guard position < scalars.count else { throw fail("unexpected end of the header") }
            switch scalars[position] {
            case "{":
                position += 1
                var members: [(key: String, value: StrictJSON)] = [], keys = Set<String>()
                skipSpace()
                if position < scalars.count, scalars[position] == "}" { position += 1; return .object([]) }
                while true {
                    skipSpace()
                    guard position < scalars.count, scalars[position] == "\"" else { throw fail("expected a key") }
                    let key = try string()
                    guard keys.insert(key).inserted else { throw fail("key \"\(key)\" appears twice") }
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard position < scalars.count else { throw fail("unterminated object") }
                    if scalars[position] == "," { position += 1; continue }
                    if scalars[position] == "}" { position += 1; return .object(members) }
                    throw fail("expected ',' or '}'")
                }
            case "[":
                position += 1
                var elements: [StrictJSON] = []
                skipSpace()
                if position < scalars.count, scalars[position] == "]" { position += 1; return .array([]) }
                while true {
                    skipSpace()
                    elements.append(try value(depth: depth + 1))
                    skipSpace()
                    guard position < scalars.count else { throw fail("unterminated array") }
                    if scalars[position] == "," { position += 1; continue }
                    if scalars[position] == "]" { position += 1; return .array(elements) }
                    throw fail("expected ',' or ']'")
                }
            case "\"": return .string(try string())
            case "t": try expect("true"); return .bool(true)
            case "f": try expect("false"); return .bool(false)
            case "n": try expect("null"); return .null
            default: return .number(try number())
            }
        }

        mutating func string() throws -> String {
            position += 1   // the opening quote
            var result = String.UnicodeScalarView()
            while true {
                guard position < scalars.count else { throw fail("unterminated string") }
                let c = scalars[position]
                position += 1
                switch c {
                case "\"": return String(result)
                case "\\":
                    guard position < scalars.count else { throw fail("unterminated escape") }
                    let e = scalars[position]
                    position += 1
                    switch e {
                    case "\"", "\\", "/": result.append(e)
                    case "b": result.append("\u{8}")
                    case "f": result.append("\u{C}")
                    case "n": result.append("\n")
                    case "r": result.append("\r")
                    case "t": result.append("\t")
                    case "u":
                        var code = try hex4()
                        if (0xD800 ..< 0xDC00).contains(code) {   // a surrogate pair
                            try expect("\\u")
                            let low = try hex4()
                            guard (0xDC00 ..< 0xE000).contains(low) else { throw fail("unpaired surrogate") }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                        result.append(scalar)
                    default: throw fail("invalid escape \\\(e)")
                    }
                default:
                    guard c.value >= 0x20 else { throw fail("control character in a string") }
                    result.append(c)
                }
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard position + 4 <= scalars.count else { throw fail("short \\u escape") }
            guard let code = UInt32(String(String.UnicodeScalarView(scalars[position ..< position + 4])), radix: 16) else {
                throw fail("invalid \\u escape")
            }
            position += 4
            return code
        }

        mutating func number() throws -> String {
            let start = position
            if position < scalars.count, scalars[position] == "-" { position += 1 }
            func digits() -> Int {
                let first = position
                while position < scalars.count, ("0" ... "9").contains(scalars[position]) { position += 1 }
                return position - first
            }
            guard digits() > 0 else { throw fail("expected a value") }
            if position < scalars.count, scalars[position] == "." {
                position += 1
                guard digits() > 0 else { throw fail("expected digits after '.'") }
            }
            if position < scalars.count, scalars[position] == "e" || scalars[position] == "E" {
                position += 1
                if position < scalars.count, scalars[position] == "+" || scalars[position] == "-" { position += 1 }
                guard digits() > 0 else { throw fail("expected an exponent") }
            }
            return String(String.UnicodeScalarView(scalars[start ..< position]))
        }
    }
}
