import Foundation
import Synchronization

/// SIGINT and SIGTERM while training: the first asks the run to stop after its current iteration, writing its
/// checkpoint, as at `--time-limit` (Ctrl-C; Slurm sends SIGTERM before it kills a job at its time limit); a
/// second one ends the process at once, as by default.
enum StopSignals {
    /// The signal caught, or 0.
    private static let caught = Atomic<Int32>(0)

    /// Catches SIGINT and SIGTERM from now on, on this thread: a parent may have started the process with them
    /// blocked (Foundation's `Process` passes its thread's mask on), where they would wait forever.
    static func install() {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGINT, SIGTERM] {
            sigaddset(&set, number)
            signal(number) { number in
                StopSignals.caught.store(number, ordering: .relaxed)
                signal(number, SIG_DFL)   // async-signal-safe: the next one takes the default action
            }
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The name of the signal that asked training to stop ("SIGINT", "SIGTERM"), or `nil`.
    static var received: String? {
        switch caught.load(ordering: .relaxed) {
        case 0: nil
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case let other: "signal \(other)"
        }
    }
}
