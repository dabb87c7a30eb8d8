import Foundation
import SwiftProtobuf
import Testing
@testable import MetaCore

/// TensorBoard event files: records framed and checksummed as TensorFlow's, events that decode with the messages.
@Suite("TensorBoard event files")
struct TensorBoardTests {
    @Test func crc32cIsCastagnolis() {
        #expect(TensorBoardWriter.crc32c(Array("123456789".utf8)) == 0xE306_9283)   // the standard check value
        #expect(TensorBoardWriter.crc32c([UInt8]()) == 0)
    }

    @Test func trainingWritesScalarsEveryLogLine() throws {
        let directory = try temporaryDirectory()
        var config = TrainingConfiguration()
        config.metaBatch = 2; config.shots = 3; config.queries = 3; config.iterations = 30
        let output = try TrainingSession.Output(checkpoint: directory.appendingPathComponent("c.safetensors"), logEvery: 10,
                                                tensorboard: directory.appendingPathComponent("board"))
        var session = try TrainingSession(configuration: config, output: output)
        _ = try session.run()
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("board").path)
        #expect(files.count == 1 && files[0].hasPrefix("events.out.tfevents."), "\(files)")
        let data = try Data(contentsOf: directory.appendingPathComponent("board/\(files[0])"))
        let events = try TensorBoardWriter.records(in: data, source: files[0]).map { try Tensorboard_Event(serializedBytes: $0) }
        #expect(events.first?.fileVersion == "brain.Event:2")
        #expect(events.dropFirst().map(\.step) == [10, 20, 30])
        let tags = Set(events.dropFirst().flatMap { $0.summary.value.map(\.tag) })
        #expect(tags == ["train/loss", "train/gradient_norm", "train/meta_learning_rate", "train/minutes"], "\(tags)")
        let log = events[2].summary.value.first { $0.tag == "train/meta_learning_rate" }
        #expect(log?.simpleValue == 0.001)
        // Every record's CRC is checked: one flipped byte, in the length or in a payload, is caught.
        for position in [3, 20, data.count - 6] {
            var corrupt = data
            corrupt[position] ^= 0x40
            #expect(throws: MetaCoreError.self) { _ = try TensorBoardWriter.records(in: corrupt, source: "f") }
        }
        #expect { _ = try TensorBoardWriter.records(in: data.prefix(data.count - 3), source: "f") } throws: { "\($0)".contains("cut short") }
    }
}
