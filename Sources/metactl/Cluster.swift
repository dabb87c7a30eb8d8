import Foundation
import MetaCore
#if canImport(MetaCoreMPI)
import MetaCoreMPI
#endif

/// The processes this metactl runs with: the ranks of an MPI job when `mpirun` or `srun` started it (and
/// metactl was built with Open MPI), else this process alone.
enum Cluster {
    /// Set once by `main`, before any command runs.
    nonisolated(unsafe) static var group: any ProcessGroup = SingleProcess()

    /// Whether an MPI launcher (mpirun, srun) started this process.
    static var launched: Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { ProcessInfo.processInfo.environment[$0] != nil }
    }

    /// Joins the MPI job this process was launched in, if any.
    static func start() throws -> any ProcessGroup {
        #if canImport(MetaCoreMPI)
        if launched { return try MPIProcessGroup.start() }
        #else
        let environment = ProcessInfo.processInfo.environment
        if let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].lazy.compactMap({ environment[$0].flatMap(Int.init) }).first, size > 1 {
            throw MetaCoreError(.invalidArgument, "this metactl was built without Open MPI, so its \(size) processes would each run the whole job; install libopenmpi-dev (make deps) and rebuild it")
        }
        #endif
        return SingleProcess()
    }

    /// Ends the job's MPI, once every rank's command has finished.
    static func finish() throws {
        #if canImport(MetaCoreMPI)
        if let mpi = group as? MPIProcessGroup { try mpi.finish() }
        #endif
    }

    /// Ends every rank of the job with `code` (this rank's error has been printed).
    static func abort(_ code: Int32) -> Never {
        #if canImport(MetaCoreMPI)
        if let mpi = group as? MPIProcessGroup { mpi.abort(code) }
        #endif
        exit(code)
    }
}
