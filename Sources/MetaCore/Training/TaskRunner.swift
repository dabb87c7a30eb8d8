import Synchronization

/// Runs independent tasks — the tasks of a meta-batch, the episodes of an evaluation — concurrently, one
/// worker per thread, each with its own ``Workspace`` and scratch vector kept between calls.
///
/// Cores are shared by measurement (`metactl bench`): when there are at least two tasks, each worker runs its
/// tasks on one thread (task parallelism scales almost linearly); a lone task gets all `threads` through its
/// workspace's ``Workspace/threads``, its layers splitting the batch (``BatchSplit``) — which scales better
/// than OpenBLAS's threads on the GEMMs of one convolution. BLAS runs single-threaded either way; the BLAS
/// thread count is process-wide, so the runner sets it before each batch of work.
///
/// The threads are kept between calls (`WorkerPool`, the caller's thread being one of them) and spin briefly
/// before parking, so that a meta-step of small tasks (`sine`) does not pay for waking them each time.
///
/// Which worker runs which task is up to the scheduler, so a task's result must not depend on it: a worker's
/// workspace carries no state between tasks (transductive BatchNorm) and each task writes only its own output.
public final class TaskRunner: @unchecked Sendable {
    /// What one thread works with. Touched by one thread at a time.
    public final class Worker {
        public let workspace: Workspace
        /// A reusable vector for a task's result (a meta-gradient), so that steady-state work does not allocate.
        public var vector: [Float] = []
        /// The stacked model's parameters and meta-gradient when the worker runs tasks stacked (``ModelStack``).
        var stackedParameters: [Float] = [], stackedVector: [Float] = []
        private var stackedWorkspaces: [Int: Workspace] = [:]
        init(model: Model) { workspace = Workspace(model: model) }

        /// The workspace of `stack`'s stacked model (one per group count, kept), on one thread.
        func workspace(for stack: ModelStack) -> Workspace {
            if let workspace = stackedWorkspaces[stack.groups] { return workspace }
            let workspace = Workspace(model: stack.stacked)
            stackedWorkspaces[stack.groups] = workspace
            return workspace
        }
    }

    /// More threads than any machine MetaCore runs on has cores (each thread holds a workspace).
    public static let maximumThreads = 1024

    public let model: Model
    /// Threads (cores) the runner may use.
    public let threads: Int
    /// How many tasks run at once (default: ``threads``, each on one thread). 1 runs the tasks one after the
    /// other, each pass splitting its batch across all the threads (``BatchSplit``): the same results up to
    /// reassociation, in the memory of one task's workspaces rather than one per thread — for large tasks,
    /// such as ResNet-12 episodes, whose passes split well.
    public var tasksAtOnce: Int
    /// Whether the workers' passes fuse batch-norm, ReLU and max-pooling (``Workspace/fusesLayers``; default true).
    public var fusesLayers = true { didSet { for worker in workers { worker.workspace.fusesLayers = fusesLayers } } }
    /// Whether ``MetaTrainer`` runs the tasks each thread takes of a meta-batch as one task of the model stacked
    /// across them (``ModelStack``), where the model, the learner (``StackableMetaLearner``) and the tasks'
    /// sizes allow: the same results to the bit, with the per-pass overhead paid once per thread instead of
    /// once per task (default true).
    public var stacksTasks = true
    /// A task whose forward activations take this many bytes is large (see ``tasksAtOnce``).
    public static let largeTaskBytes = 512 << 20
    private let workers: [Worker]
    private let pool: WorkerPool

    public init(model: Model, threads: Int = 1) throws {
        guard (1 ... Self.maximumThreads).contains(threads) else {
            throw MetaCoreError.argument("threads must be between 1 and \(Self.maximumThreads), got \(threads)")
        }
        self.model = model
        self.threads = threads
        self.tasksAtOnce = threads
        self.workers = (0 ..< threads).map { _ in Worker(model: model) }
        self.pool = WorkerPool(size: threads)
    }

    /// Calls `body(index, worker)` for every index in `0 ..< count`, on up to ``threads`` threads at once.
    /// Indices are handed out in order as workers become free. If calls throw, the error of the lowest failing
    /// index is rethrown once the workers have stopped (no new index is handed out after a failure). One call
    /// at a time: a task's body must not call back into the same runner.
    public func forEach(_ count: Int, _ body: (Int, Worker) throws -> Void) throws {
        let active = min(threads, count, tasksAtOnce)
        if BLAS.threads != 1 { BLAS.threads = 1 }
        for (w, worker) in workers.enumerated() { worker.workspace.threads = active > 1 || w > 0 ? 1 : threads }
        if active <= 1 {
            for index in 0 ..< count { try body(index, workers[0]) }
            return
        }
        let next = Atomic<Int>(0)
        let failure = Mutex<(index: Int, error: any Error)?>(nil)
        pool.run { w in
            guard w < active else { return }
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                guard index < count else { return }
                do { try body(index, workers[w]) } catch {
                    failure.withLock { if $0 == nil || index < $0!.index { $0 = (index, error) } }
                    next.store(count, ordering: .relaxed) // hand out no more work
                }
            }
        }
        if let (_, error) = failure.withLock({ $0 }) { throw error }
    }
}

extension TaskRunner {
    /// `body(index, worker)` for every index in `0 ..< count`, run as ``forEach(_:_:)`` does, collected in
    /// index order.
    public func map<T>(_ count: Int, _ body: (Int, Worker) throws -> T) throws -> [T] {
        let results = UnsafeMutablePointer<T?>.allocate(capacity: max(1, count))
        results.initialize(repeating: nil, count: count)
        defer { results.deinitialize(count: count); results.deallocate() }
        let shared = UncheckedSendable(results)
        try forEach(count) { index, worker in shared.value[index] = try body(index, worker) }
        return (0 ..< count).map { results[$0]! }
    }
}

/// Hands a non-Sendable value to other threads; the caller guarantees the accesses do not race.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
