using System.Runtime.CompilerServices;

// The Mono test runner (bindings/dotnet/tests) checks internals such as the raw
// P/Invoke results and the version comparison.
[assembly: InternalsVisibleTo("OptInTelemetry.Tests")]
