import CDataIO
import Foundation
import Testing
@testable import MetaCore

/// A deterministic test picture: smooth gradients (JPEG keeps them within a few levels) with a per-seed offset.
func testPicture(width: Int, height: Int, channels: Int, seed: Int) throws -> Image {
    var pixels: [UInt8] = []
    for y in 0 ..< height {
        for x in 0 ..< width {
            for c in 0 ..< channels { pixels.append(UInt8(min(255, x * 150 / max(width - 1, 1) + y * 2 + c * 30 + (seed * 37) % 50))) }
        }
    }
    return try Image(width: width, height: height, channels: channels, pixels: pixels)
}

/// Writes `image` at `url` (format from the extension), creating folders.
func writePicture(_ image: Image, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(image.encoded(as: Image.Format.of(fileName: url.lastPathComponent)!, quality: 95)).write(to: url)
}

@Suite("Images: decoding, resizing, the public preprocessing API")
struct ImageTests {
    @Test func pngRoundTripsExactlyAndJPEGClosely() throws {
        for channels in [1, 3] {
            let picture = try testPicture(width: 37, height: 23, channels: channels, seed: 1)
            #expect(try Image(decoding: picture.encoded(as: .png)) == picture)
            let jpeg = try Image(decoding: picture.encoded(as: .jpeg, quality: 95))
            #expect(jpeg.channels == channels && jpeg.width == 37 && jpeg.height == 23)
            let error = Double(zip(jpeg.pixels, picture.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(picture.pixels.count)
            #expect(error < 3, "JPEG at quality 95 is \(error) levels off on average")
            #expect(try Image.header(of: picture.encoded(as: .jpeg)).channels == channels)
        }
    }

    @Test func channelConversionsArePILs() throws {
        let rgb = try Image(width: 3, height: 1, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 10, 20, 30])
        // PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
        let expected: [UInt8] = [76, 150, 18]
        #expect(try rgb.converted(channels: 1).pixels == expected)
        // Decoding a colour PNG to gray applies the same formula (not libpng's linear-light one).
        #expect(try Image(decoding: rgb.encoded(as: .png), channels: 1).pixels == expected)
        let gray = try Image(width: 2, height: 1, channels: 1, pixels: [7, 200])
        #expect(try gray.converted(channels: 3).pixels == [7, 7, 7, 200, 200, 200])
        #expect(try Image(decoding: gray.encoded(as: .png), channels: 3).pixels == [7, 7, 7, 200, 200, 200])
        #expect(try Image(decoding: gray.encoded(as: .jpeg, quality: 100), channels: 3).channels == 3)
    }

    @Test func cmykJPEGsBecomeRGBAsPILMakesThem() throws {
        // libjpeg writes CMYK with Adobe's marker, which readers take as inverted: R = C'·K'/255 of the stored values.
        var out: UnsafeMutablePointer<UInt8>?, size = 0
        var error = [CChar](repeating: 0, count: 256)
        let cmyk = [UInt8](repeating: 0, count: 16 * 8 * 4).enumerated().map { i, _ in [200, 100, 50, 128][i % 4] as UInt8 }
        #expect(mc_image_encode(MC_IMAGE_JPEG, cmyk, 16, 8, 4, 100, 0, &out, &size, &error, error.count) == 0)
        let bytes = Array(UnsafeBufferPointer(start: out, count: size))
        free(out)
        let image = try Image(decoding: bytes, channels: 3)
        #expect(Array(image.pixels[0 ..< 3]) == [100, 50, 25])
    }

    @Test func areaResizingAndSquares() throws {
        let image = try Image(width: 4, height: 2, channels: 1, pixels: [0, 100, 200, 255, 50, 50, 50, 50])
        #expect(try image.resized(height: 1, width: 2).pixels == [50, 139])   // (0+100+50+50)/4, (200+255+50+50)/4 rounded
        #expect(try image.resized(height: 2, width: 4, inverting: true).pixels == image.pixels.map { 255 - $0 })
        // Enlarging repeats pixels, blending where an output cell straddles two.
        #expect(try Image(width: 2, height: 1, channels: 1, pixels: [0, 100]).resized(height: 1, width: 3).pixels == [0, 50, 100])
        // Centre crop keeps the aspect ratio: 40x30 → 26x20 (torchvision's int(20 * 40 / 30)), centre 20x20.
        let photo = try testPicture(width: 40, height: 30, channels: 3, seed: 2)
        let square = try photo.resized(toFit: 20, mode: .centerCrop)
        #expect(square.width == 20 && square.height == 20)
        #expect(square == (try photo.resized(height: 20, width: 26).cropped(top: 0, left: 3, height: 20, width: 20)))
        #expect(try photo.resized(toFit: 20, mode: .stretch) == photo.resized(height: 20, width: 20))
        #expect(throws: MetaCoreError.self) { try photo.cropped(top: 25, left: 0, height: 10, width: 10) }
    }

    @Test func scalarsAreChannelsFirstAndStandardised() throws {
        let image = try Image(width: 2, height: 1, channels: 3, pixels: [0, 51, 255, 255, 102, 0])
        let plain = try image.scalars()
        #expect(zip(plain, [0, 1, 0.2, 0.4, 1, 0] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 })
        let standard = try image.scalars(mean: [0.5, 0.5, 0.5], standardDeviation: [0.5, 0.25, 1])
        #expect(zip(standard, [-1, 1, -1.2, -0.4, 0.5, -0.5] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(throws: MetaCoreError.self) { try image.scalars(mean: [0], standardDeviation: [1]) }
        #expect(throws: MetaCoreError.self) { try image.scalars(mean: [0, 0, 0], standardDeviation: [1, 0, 1]) }
    }

    @Test func hostileImagesAreRefusedByName() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let jpeg = try testPicture(width: 64, height: 48, channels: 3, seed: 3).encoded(as: .jpeg)
        let truncated = directory.appendingPathComponent("cut.jpg")
        try Data(jpeg[..<(jpeg.count / 2)]).write(to: truncated)
        #expect { try Image(contentsOf: truncated) } throws: { "\($0)".contains("cut.jpg") && "\($0)".contains("truncated") }
        let text = directory.appendingPathComponent("notes.jpg")
        try Data("not a picture".utf8).write(to: text)
        #expect { try Image(contentsOf: text) } throws: { "\($0)".contains("notes.jpg") && "\($0)".contains("not a PNG or JPEG") }
        // A header that claims 60000x60000 is refused before 10 GB are allocated.
        var huge = jpeg
        if let sof = (0 ..< huge.count - 8).first(where: { huge[$0] == 0xFF && huge[$0 + 1] == 0xC0 }) {
            huge[sof + 5] = 0xEA; huge[sof + 6] = 0x60; huge[sof + 7] = 0xEA; huge[sof + 8] = 0x60
        }
        #expect { try Image(decoding: huge) } throws: { "\($0)".contains("60000x60000") }
        #expect { try Image(decoding: jpeg, limits: Image.Limits(maximumBytes: 100)) } throws: { "\($0)".contains("bytes") }
        // A progressive file with more scans than allowed: refused, however small.
        var out: UnsafeMutablePointer<UInt8>?, size = 0
        var error = [CChar](repeating: 0, count: 256)
        let picture = try testPicture(width: 32, height: 32, channels: 3, seed: 4)
        #expect(mc_image_encode(MC_IMAGE_JPEG, picture.pixels, 32, 32, 3, 90, 1, &out, &size, &error, error.count) == 0)
        let progressive = Array(UnsafeBufferPointer(start: out, count: size))
        free(out)
        #expect(throws: Never.self) { try Image(decoding: progressive) }
        #expect { try Image(decoding: progressive, limits: Image.Limits(maximumScans: 3)) } throws: { "\($0)".contains("progressive scans") }
        // Every prefix of a valid file is an error or a whole image, never a crash.
        for cut in stride(from: 0, to: progressive.count, by: 7) { _ = try? Image(decoding: Array(progressive[..<cut])) }
    }
}

@Suite("Image folders: layouts, splits, the cache, episodes")
struct ImageFolderTests {
    /// Class folders of odd-sized PNG and JPEG files, gray and RGB, under `root/prefix`.
    func writeClasses(_ names: [String], under root: URL, images: Int = 3) throws {
        for (c, name) in names.enumerated() {
            for i in 0 ..< images {
                let channels = (c + i) % 2 == 0 ? 3 : 1, ext = i % 2 == 0 ? "png" : "JPG"
                try writePicture(testPicture(width: 17 + 3 * i, height: 13 + c, channels: channels, seed: c * 10 + i),
                                 to: root.appendingPathComponent("\(name)/img\(i).\(ext)"))
            }
        }
        try Data("ignored".utf8).write(to: root.appendingPathComponent("README.txt"))
    }

    func settings(side: Int = 8, channels: Int = 3) -> ImageFolder.Settings {
        var settings = ImageFolder.Settings()
        settings.side = side; settings.channels = channels
        return settings
    }

    func load(_ root: URL, _ settings: ImageFolder.Settings, cache: URL? = nil) throws -> (ImageFolder, CacheStatus) {
        try ImageFolder.load(from: root.path, settings: settings, context: DatasetLoading(cacheDirectory: cache, threads: 2))
    }

    @Test func classFoldersWithSplitFiles() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeClasses(["ant", "bee", "cat", "dog", "eel", "fox"], under: root)
        try Data("ant\nbee\n cat \n".utf8).write(to: root.appendingPathComponent("train.txt"))
        try Data("dog\n".utf8).write(to: root.appendingPathComponent("val.txt"))
        try Data("eel\nfox\n".utf8).write(to: root.appendingPathComponent("test.txt"))
        let (images, status) = try load(root, settings())
        #expect(status == .disabled && images.layout == .classFolders)
        #expect(images.classes.map(\.name) == ["ant", "bee", "cat", "dog", "eel", "fox"])
        #expect(images.classes.map(\.split) == [.train, .train, .train, .validation, .test, .test])
        #expect(images.classes.allSatisfy { $0.images.count == 3 } && images.imageCount == 18)
        // Each image is its file decoded to RGB and area-resized, gray files included.
        let file = root.appendingPathComponent("dog/img1.JPG")
        #expect(images.image(images.classes[3].images.lowerBound + 1) == (try Image(contentsOf: file, channels: 3).resized(height: 8, width: 8)))
        // The statistics are the training classes' samples'.
        let training = (0 ..< 9).flatMap { images.image($0).pixels }
        let red = stride(from: 0, to: training.count, by: 3).map { Double(training[$0]) / 255 }
        #expect(abs(Double(images.mean[0]) - red.reduce(0, +) / Double(red.count)) < 1e-5)
        // A class named by a split file but absent, or in two files, is an error that names it.
        try Data("ant\nbee\ncat\nyak\n".utf8).write(to: root.appendingPathComponent("train.txt"))
        #expect { try load(root, settings()) } throws: { "\($0)".contains("'yak'") }
        try Data("ant\nbee\ncat\ndog\n".utf8).write(to: root.appendingPathComponent("train.txt"))
        #expect { try load(root, settings()) } throws: { "\($0)".contains("'dog'") && "\($0)".contains("more than one") }
    }

    @Test func classFoldersWithoutSplitFilesAreShuffledBySeed() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let names = (0 ..< 10).map { "class\($0)" }
        try writeClasses(names, under: root, images: 1)
        let (images, _) = try load(root, settings(side: 4, channels: 1))
        #expect(images.classes(in: .train).count == 6 && images.classes(in: .validation).count == 1 && images.classes(in: .test).count == 3)
        #expect(try load(root, settings(side: 4, channels: 1)).0.classes == images.classes)
        var other = settings(side: 4, channels: 1)
        other.classSplitSeed = 1
        #expect(try load(root, other).0.classes.map(\.split) != images.classes.map(\.split))
        other.classSplit = [50, 60, 0]
        #expect(throws: MetaCoreError.self) { try load(root, other) }
    }

    @Test func splitFoldersMiniImageNetAndCUBLayouts() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        // Split folders, with "validation" spelled out.
        let split = root.appendingPathComponent("split")
        try writeClasses(["a", "b"], under: split.appendingPathComponent("train"))
        try writeClasses(["c"], under: split.appendingPathComponent("validation"))
        try writeClasses(["d", "e"], under: split.appendingPathComponent("test"))
        let folders = try load(split, settings()).0
        #expect(folders.layout == .splitFolders && folders.classes.map(\.split) == [.train, .train, .validation, .test, .test])
        // mini-ImageNet: images/ and three CSVs (the order of the CSV is the order of the class's images).
        let mini = root.appendingPathComponent("mini")
        var csv: [ImageFolder.Split: String] = [:]
        for (i, (label, split)) in [("n01", ImageFolder.Split.train), ("n02", .train), ("n03", .validation), ("n04", .test)].enumerated() {
            for j in 0 ..< 3 {
                let name = "\(label)0000000\(3 - j).jpg"
                try writePicture(testPicture(width: 30, height: 20, channels: 3, seed: i * 3 + j), to: mini.appendingPathComponent("images/\(name)"))
                csv[split, default: "filename,label\n"] += "\(name),\(label)\n"
            }
        }
        for (split, text) in csv { try Data(text.utf8).write(to: mini.appendingPathComponent("\(split.rawValue).csv")) }
        let miniImages = try load(mini, settings()).0
        #expect(miniImages.layout == .miniImageNet && miniImages.classes.map(\.name) == ["n01", "n02", "n03", "n04"])
        #expect(miniImages.image(0) == (try Image(contentsOf: mini.appendingPathComponent("images/n0100000003.jpg"), channels: 3).resized(height: 8, width: 8)))
        try Data("filename,label\n../../etc/passwd,n01\n".utf8).write(to: mini.appendingPathComponent("test.csv"))
        #expect { try load(mini, settings()) } throws: { "\($0)".contains("test.csv line 2") }
        try Data("name,class\n".utf8).write(to: mini.appendingPathComponent("test.csv"))
        #expect { try load(mini, settings()) } throws: { "\($0)".contains("filename,label") }
        // CUB-200-2011: 200 class folders split by Chen et al.'s rule.
        let cub = root.appendingPathComponent("CUB_200_2011")
        let picture = try testPicture(width: 9, height: 9, channels: 3, seed: 0).encoded(as: .jpeg)
        for i in 1 ... 200 {
            let folder = cub.appendingPathComponent(String(format: "images/%03d.Bird_%d", i, i))
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(picture).write(to: folder.appendingPathComponent("a.jpg"))
        }
        try Data().write(to: cub.appendingPathComponent("classes.txt"))
        try Data().write(to: cub.appendingPathComponent("image_class_labels.txt"))
        let birds = try load(cub, settings(side: 4)).0
        #expect(birds.layout == .cub)
        #expect(birds.classes(in: .train).count == 100 && birds.classes(in: .validation).count == 50 && birds.classes(in: .test).count == 50)
        #expect(birds.classes[0].name == "001.Bird_1" && birds.classes[0].split == .train)
        #expect(birds.classes.first { $0.split == .validation }!.name == "002.Bird_2")
        #expect(birds.classes.first { $0.split == .test }!.name == "004.Bird_4")
    }

    @Test func badFilesStopTheLoadOrAreSkippedAndCounted() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeClasses(["a", "b", "c"], under: root)
        try Data("garbage".utf8).write(to: root.appendingPathComponent("b/broken.jpg"))
        #expect { try load(root, settings()) } throws: { "\($0)".contains("b/broken.jpg") && "\($0)".contains("--skip-bad-images") }
        var skipping = settings()
        skipping.skipBadImages = true
        let (images, _) = try load(root, skipping)
        #expect(images.skipped.count == 1 && images.skipped[0].contains("broken.jpg"))
        #expect(images.classes.map(\.images.count) == [3, 3, 3])
        // The good images after the skipped one are in place.
        #expect(images.image(images.classes[2].images.lowerBound) == (try Image(contentsOf: root.appendingPathComponent("c/img0.png"), channels: 3).resized(height: 8, width: 8)))
        #expect(images.summary.contains("1 files skipped"))
    }

    @Test func theCacheIsMappedChecksummedAndRebuiltWhenStale() throws {
        let root = try temporaryDirectory(), cache = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: cache) }
        try writeClasses(["a", "b", "c", "d"], under: root)
        let (built, first) = try load(root, settings(), cache: cache)
        guard case .rebuilt(let url, _) = first else { Issue.record("expected a new cache, got \(first)"); return }
        let (cached, second) = try load(root, settings(), cache: cache)
        #expect(second == .loaded(url))
        #expect(cached.classes == built.classes && cached.mean == built.mean && cached.standardDeviation == built.standardDeviation)
        #expect((0 ..< built.imageCount).allSatisfy { cached.image($0) == built.image($0) })
        // Other settings, another cache file.
        guard case .rebuilt(let grayURL, _) = try load(root, settings(channels: 1), cache: cache).1 else { Issue.record("gray reused the RGB cache"); return }
        #expect(grayURL != url)
        // A file rewritten: stale. A flipped byte: corrupt. Both rebuilt from the files.
        try writePicture(testPicture(width: 20, height: 20, channels: 3, seed: 99), to: root.appendingPathComponent("b/img0.png"))
        guard case .rebuilt(_, let stale) = try load(root, settings(), cache: cache).1 else { Issue.record("a rewritten file served from cache"); return }
        #expect(stale.contains("stale"))
        var bytes = [UInt8](try Data(contentsOf: url))
        bytes[bytes.count - 10] ^= 1
        try Data(bytes).write(to: url)
        guard case .rebuilt(_, let corrupt) = try load(root, settings(), cache: cache).1 else { Issue.record("a corrupt cache was used"); return }
        #expect(corrupt.contains("checksum"))
        #expect(try load(root, settings(), cache: cache).1 == .loaded(url))
    }

    @Test func episodesAreBalancedReproducibleAndAugmentedBySeed() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeClasses(["a", "b", "c", "d"], under: root, images: 4)
        var plain = settings(side: 10)
        plain.classSplit = [100, 0, 0]
        let (images, _) = try load(root, plain)
        let tasks = try ImageTasks(images, classes: images.classes(in: .train), ways: 3, shots: 1, queries: 2)
        var random = RandomSource(seed: 5), again = RandomSource(seed: 5)
        let task = try tasks.sample(&random)
        #expect(task.support.inputs.shape == [3, 3, 10, 10] && task.query.inputs.shape == [6, 3, 10, 10])
        #expect(task.query.targets == .labels([0, 0, 1, 1, 2, 2]))
        #expect(try tasks.sample(&again).query.inputs.scalars == task.query.inputs.scalars)
        // Normalised by the training statistics: the mean input over every image is about 0.
        let everything = try tasks.batch(Array(0 ..< images.imageCount), labels: Array(repeating: 0, count: images.imageCount), random: &random)
        let red = everything.inputs.scalars.enumerated().filter { ($0.offset / 100) % 3 == 0 }.map { Double($0.element) }
        #expect(abs(red.reduce(0, +) / Double(red.count)) < 1e-4)
        // Augmented: crops and flips change the inputs, the same way for the same seed.
        let augmented = try ImageTasks(images, classes: images.classes(in: .train), ways: 3, shots: 1, queries: 2, augmentation: .cropFlip)
        var a = RandomSource(seed: 5), b = RandomSource(seed: 5)
        let x = try augmented.sample(&a), y = try augmented.sample(&b)
        #expect(x.query.inputs.scalars == y.query.inputs.scalars && x.query.targets == task.query.targets)
        #expect(x.query.inputs.scalars != task.query.inputs.scalars)
        #expect { try ImageTasks(images, classes: images.classes(in: .train), ways: 3, shots: 2, queries: 3) } throws: { "\($0)".contains("has 4 images") }
        #expect { try ImageTasks(images, classes: [0, 1], ways: 3, shots: 1, queries: 1) } throws: { "\($0)".contains("3-way") }
    }

    @Test func aRunTrainsAndEvaluatesFromTheCommandLinesOptions() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeClasses(["a", "b", "c", "d", "e"], under: root.appendingPathComponent("train"), images: 3)
        try writeClasses(["f", "g"], under: root.appendingPathComponent("test"), images: 3)
        let config = try TrainingConfiguration().applying(["--algorithm", "protonet", "--task", "images", "--ways", "2", "--shots", "1", "--queries", "2",
                                                           "--image-size", "16", "--color", "gray", "--augment", "crop-flip", "--channels", "4",
                                                           "--iterations", "3", "--meta-batch", "2"]).resolved()
        let data = DataSource(path: root.path, cacheDirectory: nil)
        var trainer = try config.makeTrainer(data: data)
        for _ in 0 ..< 3 { _ = try trainer.step() }
        let test = try config.makeTasks(.test, data: data)
        #expect(test.inputShape == [1, 16, 16])
        #expect((test as? ImageTasks)?.classes.map { (test as! ImageTasks).dataset.classes[$0].name } == ["f", "g"])
        #expect(data.datasets.count == 1, "train and test share one load")
    }
}

@Suite("Fuzzing the image cache")
struct ImageCacheHostileTests {
    @Test func mutatedCachesAreRefusedNeverCrash() throws {
        let seed = try UntrustedInput.sampleImageCache()
        #expect(throws: Never.self) { try UntrustedInput.imageCache(seed) }
        var random = RandomSource(seed: 11)
        for _ in 0 ..< 400 {
            var bytes = seed
            for _ in 0 ..< 1 + Int(random.next() % 4) {
                let i = Int(random.next() % UInt64(bytes.count))
                bytes[i] = UInt8(truncatingIfNeeded: random.next())
            }
            if random.next() % 4 == 0 { bytes = Array(bytes[..<Int(random.next() % UInt64(bytes.count))]) }
            do { try UntrustedInput.imageCache(bytes) } catch is MetaCoreError {}
        }
    }
}
