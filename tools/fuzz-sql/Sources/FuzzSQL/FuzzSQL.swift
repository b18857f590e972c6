import SQL

/// Every input is a query; every outcome but a crash, hang or sanitizer report is fine. The
/// seeds in `corpus/` steer the fuzzer into the grammar quickly.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        try SQLEngine.check(text)
    } catch let error as SQLError {
        // Messages must render, with or without a location.
        _ = error.description
    } catch {
        fatalError("non-SQL error escaped: \(error)")
    }
    return 0
}

/// libFuzzer's driver, entered from the executable's own main: SwiftPM links executables
/// through `FuzzSQL_main`, so the fuzzer's `main` is not the one that runs.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzSQL_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
