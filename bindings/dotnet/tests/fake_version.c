/* A stand-in native library whose tel_version() is not the binding's expected
 * version: the .NET tests load it (in a child process, via LD_LIBRARY_PATH) to
 * check that the binding refuses a mismatched native library on first use. */
const char *tel_version(void) { return "9.9.9-fake"; }
