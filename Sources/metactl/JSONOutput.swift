import Foundation

/// `value` as pretty, key-sorted JSON (the `--json` and `--output` format of every subcommand).
func encodeJSON(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return try encoder.encode(value)
}

/// Prints `value` as pretty, key-sorted JSON.
func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try encodeJSON(value), as: UTF8.self))
}
