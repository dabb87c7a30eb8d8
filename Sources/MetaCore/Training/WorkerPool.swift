import Glibc
import Synchronization

/// Threads kept between batches of work: ``run(_:)`` calls `body(0)` on the caller's thread and
/// `body(1 ..< size)` on the pool's threads at once, and returns when every call has.
///
/// Between batches a pool thread spins for a short while before it parks on a condition variable, and so does
/// a caller waiting for the others: a meta-step's serial part (sampling, the optimiser) is shorter than waking a
/// parked thread, which on a 2-core VM cost `sine` about a quarter of its 2-thread time with Dispatch's
/// `concurrentPerform`. A pool with more threads than cores does not spin.
final class WorkerPool: @unchecked Sendable {
    /// Threads taking part in a batch, the caller's included.
    let size: Int
    /// How long a waiting thread spins before it parks (the first check of the clock comes after
    /// `checkEvery` loads): 100 µs, or not at all when the pool has more threads than the machine has cores,
    /// where a spinning thread would take a core from one with work.
    private let spinTime: Duration
    private static let checkEvery = 64

    /// Incremented (under the lock) to hand out a batch; pool threads run a batch when they see a new value.
    private let generation = Atomic<Int>(0)
    /// Pool threads still running the current batch.
    private let remaining = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Set while a batch runs: a second batch meanwhile (from a task's body, or another thread) is a misuse.
    private let busy = Atomic<Bool>(false)
    /// The current batch's body: written by the caller before `generation` moves on (release), read by the
    /// pool threads after they see it (acquire).
    private let job = UnsafeMutablePointer<((Int) -> Void)?>.allocate(capacity: 1)
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Guarded by `lock`: parked pool threads, and whether the caller is parked waiting for `done`.
    private var sleepers = 0, callerAsleep = false
    private var threads: [pthread_t] = []

    init(size: Int) {
        self.size = max(1, size)
        spinTime = self.size <= sysconf(Int32(_SC_NPROCESSORS_ONLN)) ? .microseconds(100) : .zero
        job.initialize(to: nil)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
        for index in 1 ..< self.size {
            let context = Unmanaged.passRetained(Start(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            pthread_attr_setstacksize(&attributes, 8 << 20)
            let status = pthread_create(&thread, &attributes, { context in
                let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
                start.pool.serve(start.index)
                return nil
            }, context)
            pthread_attr_destroy(&attributes)
            guard status == 0 else { fatalError("could not start a worker thread (pthread_create: \(status))") }
            threads.append(thread)
        }
    }

    /// What a new pool thread starts from. Unowned: the pool's deinit joins its threads before it is freed.
    private final class Start {
        unowned(unsafe) let pool: WorkerPool
        let index: Int
        init(pool: WorkerPool, index: Int) { self.pool = pool; self.index = index }
    }

    deinit {
        pthread_mutex_lock(lock)
        stopping.store(true, ordering: .releasing)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(lock)
        for thread in threads { pthread_join(thread, nil) }
        pthread_cond_destroy(wake); pthread_cond_destroy(done); pthread_mutex_destroy(lock)
        wake.deallocate(); done.deallocate(); lock.deallocate()
        job.deinitialize(count: 1); job.deallocate()
    }

    /// Calls `body(k)` for every k in `0 ..< size` at once, k = 0 on the calling thread; returns when all
    /// have returned. One batch at a time: calling it again before it returns (from `body`, or from another
    /// thread) stops the program with a message rather than deadlocking.
    func run(_ body: (Int) -> Void) {
        guard size > 1 else { return body(0) }
        precondition(!busy.exchange(true, ordering: .acquiring), "a WorkerPool (TaskRunner) runs one batch at a time")
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            job.pointee = body
            remaining.store(size - 1, ordering: .relaxed)
            pthread_mutex_lock(lock)
            generation.add(1, ordering: .releasing)
            if sleepers > 0 { pthread_cond_broadcast(wake) }
            pthread_mutex_unlock(lock)
            body(0)
            if !spin(until: { remaining.load(ordering: .acquiring) == 0 }) {
                pthread_mutex_lock(lock)
                callerAsleep = true
                while remaining.load(ordering: .acquiring) > 0 { pthread_cond_wait(done, lock) }
                callerAsleep = false
                pthread_mutex_unlock(lock)
            }
            job.pointee = nil
        }
    }

    /// A pool thread's loop: wait for a new batch, run its part, report.
    private func serve(_ index: Int) {
        var seen = 0
        while true {
            let isNew = { self.generation.load(ordering: .acquiring) != seen || self.stopping.load(ordering: .acquiring) }
            if !spin(until: isNew) {
                pthread_mutex_lock(lock)
                sleepers += 1
                while !isNew() { pthread_cond_wait(wake, lock) }
                sleepers -= 1
                pthread_mutex_unlock(lock)
            }
            if stopping.load(ordering: .acquiring) { return }
            seen = generation.load(ordering: .acquiring)
            job.pointee!(index)
            if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                pthread_mutex_lock(lock)
                if callerAsleep { pthread_cond_signal(done) }
                pthread_mutex_unlock(lock)
            }
        }
    }

    /// Spins until `condition` holds (true) or `spinTime` has passed (false).
    private func spin(until condition: () -> Bool) -> Bool {
        let clock = ContinuousClock(), deadline = clock.now + spinTime
        while true {
            for _ in 0 ..< Self.checkEvery where condition() { return true }
            if clock.now >= deadline { return condition() }
        }
    }
}
