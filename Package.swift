// swift-tools-version:6.0
import Foundation
import PackageDescription

// Open MPI (Debian: libopenmpi-dev, openmpi-bin) is optional: where its header is found, `metactl` links it
// through MetaCoreMPI and runs under `mpirun`; elsewhere the library, metactl and the tests build without it.
// METACORE_MPI=0 builds without it even where it is installed.
let openMPI = ProcessInfo.processInfo.environment["METACORE_MPI"] != "0"
    && ["/usr/lib/x86_64-linux-gnu/openmpi/include", "/usr/lib/aarch64-linux-gnu/openmpi/include", "/usr/include/openmpi",
        "/usr/lib64/openmpi/include", "/usr/local/include", "/opt/homebrew/include"]
        .contains { FileManager.default.fileExists(atPath: $0 + "/mpi.h") }

let package = Package(
    name: "MetaCore",
    products: [
        .library(name: "MetaCore", targets: ["MetaCore"]),
    ] + (openMPI ? [.library(name: "MetaCoreMPI", targets: ["MetaCoreMPI"])] : []) + [
        .executable(name: "metactl", targets: ["metactl"]),
        .executable(name: "metacore-fuzz", targets: ["MetaCoreFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `metactl train --config FILE`: run descriptions in YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // TensorBoard event files: the messages of Protos/tensorboard.proto (generated code committed).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        // `make docs`: DocC documentation of the library.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // Hot loops in plain C11 over OpenBLAS (cblas) and LAPACKE (Debian: libopenblas-dev, liblapacke-dev).
        .target(
            name: "CKernels",
            linkerSettings: [.linkedLibrary("openblas"), .linkedLibrary("lapacke"), .linkedLibrary("m")]
        ),
        // Dataset input in plain C11: zip archives (libzip), PNG (libpng), JPEG (libjpeg-turbo), CRC-32 (zlib).
        // Debian: libzip-dev, libpng-dev, libjpeg-dev (libjpeg-turbo on Debian and Ubuntu), zlib1g-dev.
        .target(
            name: "CDataIO",
            linkerSettings: [.linkedLibrary("zip"), .linkedLibrary("png"), .linkedLibrary("jpeg"), .linkedLibrary("z"), .linkedLibrary("m")]
        ),
        .target(name: "MetaCore", dependencies: ["CKernels", "CDataIO", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(
            name: "metactl",
            dependencies: ["MetaCore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Yams", package: "Yams")] + (openMPI ? ["MetaCoreMPI"] : [])
        ),
        // Fixtures: checkpoints written by earlier versions, which must still load, evaluate and resume.
        // Fuzz targets for every parser of outside bytes: a replay tool in normal builds, libFuzzer binaries
        // with -DFUZZING -sanitize=fuzzer (make fuzz).
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "MetaCoreFuzz", dependencies: ["MetaCore", "CFuzzDriver"]),
    ] + (openMPI ? [
        // Processes of an MPI job as a MetaCore ProcessGroup: Open MPI's C API through a system-library target
        // (its header's handles wrapped as inline functions, shim.h).
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "MetaCoreMPI", dependencies: ["MetaCore", "COpenMPI"]),
    ] : []) + [
        // METACORE_MPI: metactl was built with Open MPI, so the tests run it under mpirun.
        .testTarget(name: "MetaCoreTests", dependencies: ["MetaCore", "CKernels", "CDataIO", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                    resources: [.copy("Fixtures")],
                    swiftSettings: openMPI ? [.define("METACORE_MPI")] : []),
    ]
)
