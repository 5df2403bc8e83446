Console.Error.WriteLine("usage: KQuant.Benchmarks <benchmark> (none yet)");
return 2;
