import COpenMPI
import Foundation
import MetaCore

/// The processes of an MPI job (`mpirun -n N`, `srun`) as a MetaCore ``ProcessGroup``: MPI_COMM_WORLD, with
/// MPI's errors returned (and thrown as ``MetaCoreError``) rather than aborting inside the library.
///
/// ```swift
/// let group = try MPIProcessGroup.start()
/// var session = try TrainingSession(configuration: config, output: output, threads: 1, group: group)
/// _ = try session.run()
/// try group.finish()
/// ```
///
/// MPI is started with `MPI_THREAD_FUNNELED`: only the thread that started it makes MPI calls, which is how
/// MetaCore calls it (the collectives sit between a meta-step's parallel parts, on the caller's thread).
public final class MPIProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int

    private init(rank: Int, size: Int) { self.rank = rank; self.size = size }

    /// Starts MPI (once per process) and joins MPI_COMM_WORLD.
    public static func start() throws -> MPIProcessGroup {
        var rank: Int32 = 0, size: Int32 = 0
        try check(mc_mpi_start(&rank, &size), "MPI_Init")
        return MPIProcessGroup(rank: Int(rank), size: Int(size))
    }

    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        let (counts, offsets) = try layout(counts, buffer.count)
        try Self.check(mc_mpi_allgather_float(buffer.baseAddress, counts, offsets), "MPI_Allgatherv", rank: rank)
    }

    public func allGather(_ buffer: UnsafeMutableBufferPointer<Double>, counts: [Int]) throws {
        let (counts, offsets) = try layout(counts, buffer.count)
        try Self.check(mc_mpi_allgather_double(buffer.baseAddress, counts, offsets), "MPI_Allgatherv", rank: rank)
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let count = Int32(exactly: buffer.count) else { throw MetaCoreError(.invalidArgument, "MPI_Allreduce of \(buffer.count) values: more than an MPI count holds") }
        try Self.check(mc_mpi_allreduce_sum_float(buffer.baseAddress, count), "MPI_Allreduce", rank: rank)
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Double>, from root: Int) throws {
        guard let count = Int32(exactly: buffer.count) else { throw MetaCoreError(.invalidArgument, "MPI_Bcast of \(buffer.count) values: more than an MPI count holds") }
        try Self.check(mc_mpi_broadcast_double(buffer.baseAddress, count, Int32(root)), "MPI_Bcast", rank: rank)
    }

    /// Waits for every rank.
    public func barrier() throws { try Self.check(mc_mpi_barrier(), "MPI_Barrier", rank: rank) }

    /// Ends MPI: every rank calls it once, at the end.
    public func finish() throws { try Self.check(mc_mpi_finish(), "MPI_Finalize", rank: rank) }

    /// Ends every process of the job with exit status `code` (after a rank's error, so that no rank waits in a
    /// collective for one that has stopped).
    public func abort(_ code: Int32) -> Never {
        mc_mpi_abort(code)
        exit(code)
    }

    /// MPI's counts and displacements, which are Int32.
    private func layout(_ counts: [Int], _ capacity: Int) throws -> ([Int32], [Int32]) {
        guard counts.count == size else { throw MetaCoreError(.invalidArgument, "an allgather over \(size) ranks was given \(counts.count) counts") }
        let total = counts.reduce(0, +)
        guard total <= capacity else { throw MetaCoreError(.invalidArgument, "an allgather of \(total) values into a buffer of \(capacity)") }
        guard total <= Int(Int32.max) else {
            throw MetaCoreError(.invalidArgument, "an allgather of \(total) values is more than an MPI count holds (\(Int32.max)); use --reduction sum or a smaller meta-batch")
        }
        var offsets: [Int32] = [], offset = 0
        for count in counts { offsets.append(Int32(offset)); offset += count }
        return (counts.map { Int32($0) }, offsets)
    }

    private static func check(_ code: Int32, _ call: String, rank: Int? = nil) throws {
        guard code != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(mc_mpi_max_error_string()))
        mc_mpi_error_string(code, &text, Int32(text.count))
        let reason = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw MetaCoreError(.io, "\(call) failed\(rank.map { " on rank \($0)" } ?? ""): \(reason.isEmpty ? "MPI error \(code)" : reason)")
    }
}
