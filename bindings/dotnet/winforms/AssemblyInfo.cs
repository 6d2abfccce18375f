using System.Reflection;

[assembly: AssemblyTitle("OptInTelemetry.WinForms")]
[assembly: AssemblyDescription("A consent panel and dialog (Windows Forms) for optin-telemetry's anonymous, opt-in usage statistics")]
