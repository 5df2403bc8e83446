using KQuant.Cli;

return await KQuantApp.RunAsync(args);
