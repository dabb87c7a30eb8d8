import Foundation
import SwiftProtobuf

/// Scalars in TensorBoard's event files, which `tensorboard --logdir DIR` shows as charts.
///
/// A file is a sequence of records, each an `Event` message (`Protos/tensorboard.proto`, TensorFlow's own
/// field numbers) framed as TensorFlow's record files are: the payload's length as a little-endian UInt64, the
/// masked CRC-32C of those 8 bytes, the payload, and the masked CRC-32C of the payload. The first event names the
/// file version; each ``add(_:step:)`` appends one with a summary of scalar values. Each writer starts a file of
/// its own in the directory (TensorBoard reads every file there as one run), written through as it goes: a
/// crash can cut the last record short, which readers recognise by its CRC.
public final class TensorBoardWriter {
    /// The event file this writer appends to.
    public let url: URL
    private let handle: FileHandle

    /// Starts a new event file in `directory` (created if needed).
    public init(directory: URL) throws {
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw MetaCoreError(.io, "cannot create the TensorBoard directory \(directory.path): \(describe(error))")
        }
        let now = Date().timeIntervalSince1970
        let host = ProcessInfo.processInfo.hostName.replacingOccurrences(of: "/", with: "_")
        url = directory.appendingPathComponent("events.out.tfevents.\(Int(now)).\(host).\(getpid()).metacore")
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: url) else {
            throw MetaCoreError(.io, "cannot create the TensorBoard event file \(url.path)")
        }
        self.handle = handle
        var event = Tensorboard_Event()
        event.wallTime = now
        event.fileVersion = "brain.Event:2"
        try write(event)
    }

    deinit { try? handle.close() }

    /// Appends one event at `step` holding `scalars` (tag, value), timed now.
    public func add(_ scalars: [(tag: String, value: Double)], step: Int) throws {
        var summary = Tensorboard_Summary()
        summary.value = scalars.map { scalar in
            var value = Tensorboard_Summary.Value()
            value.tag = scalar.tag
            value.simpleValue = Float(scalar.value)
            return value
        }
        var event = Tensorboard_Event()
        event.wallTime = Date().timeIntervalSince1970
        event.step = Int64(step)
        event.summary = summary
        try write(event)
    }

    private func write(_ event: Tensorboard_Event) throws {
        let record = Self.record(try event.serializedData())
        do { try handle.write(contentsOf: record) } catch {
            throw MetaCoreError(.io, "cannot write the TensorBoard event file \(url.path): \(describe(error))")
        }
    }

    /// `payload` framed as a record.
    static func record(_ payload: Data) -> Data {
        var length = Data()
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { length.append(contentsOf: $0) }
        var record = length
        withUnsafeBytes(of: maskedCRC(length).littleEndian) { record.append(contentsOf: $0) }
        record.append(payload)
        withUnsafeBytes(of: maskedCRC(payload).littleEndian) { record.append(contentsOf: $0) }
        return record
    }

    /// The payloads of an event file's records, every length and CRC checked; `source` names the file in errors.
    public static func records(in data: Data, source: String) throws -> [Data] {
        var records: [Data] = [], offset = data.startIndex
        func bad(_ why: String) -> MetaCoreError { MetaCoreError(.corruptData, "\(source): record \(records.count + 1) \(why)") }
        func uint<T: FixedWidthInteger>(_: T.Type, at position: Int) -> T {
            data[position ..< position + MemoryLayout<T>.size].withUnsafeBytes { T(littleEndian: $0.loadUnaligned(as: T.self)) }
        }
        while offset < data.endIndex {
            guard data.endIndex - offset >= 12 else { throw bad("is cut short in its header") }
            let length = uint(UInt64.self, at: offset)
            guard uint(UInt32.self, at: offset + 8) == maskedCRC(data[offset ..< offset + 8]) else { throw bad("has a corrupt length (its CRC does not match)") }
            guard length <= UInt64(data.endIndex - offset - 16) else { throw bad("is cut short (\(length) bytes announced)") }
            let start = offset + 12, end = start + Int(length)
            let payload = data[start ..< end]
            guard uint(UInt32.self, at: end) == maskedCRC(payload) else { throw bad("is corrupt (its CRC does not match)") }
            records.append(Data(payload))
            offset = end + 4
        }
        return records
    }

    /// TensorFlow's masked CRC-32C: the checksum rotated right by 15 bits plus a constant, so that a CRC of data
    /// holding CRCs is not trivially related to them.
    static func maskedCRC<Bytes: Collection>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), a table lookup per byte.
    static func crc32c<Bytes: Collection>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0 ..< 256).map { n in
        var c = UInt32(n)
        for _ in 0 ..< 8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }
}
