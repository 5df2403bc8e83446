using Spectre.Console;

namespace KQuant.Cli.Ui;

/// <summary>Terminal output: Spectre.Console tables and a live progress bar. The only place Spectre is used.</summary>
public sealed class SpectreUi(IAnsiConsole console, TextWriter error) : IUi
{
    public void Heading(string text) => console.Write(new Rule($"[bold]{Markup.Escape(text)}[/]").LeftJustified());

    public void Line(string text = "") => console.WriteLine(text);

    public void Raw(string text) => Console.Out.Write(text);

    public void Warning(string text) => error.WriteLine($"warning: {text}");

    public void Error(string text) => error.WriteLine($"error: {text}");

    public void Table(string? title, IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null)
    {
        var table = new Table().Border(TableBorder.Rounded);
        if (title is not null) table.Title = new TableTitle(Markup.Escape(title));
        for (var i = 0; i < columns.Count; i++)
        {
            var column = new TableColumn(Markup.Escape(columns[i]));
            if (rightAligned?.Contains(i) == true) column.RightAligned();
            table.AddColumn(column);
        }
        foreach (var row in rows) table.AddRow(row.Select(cell => new Text(cell)).ToArray<Spectre.Console.Rendering.IRenderable>());
        console.Write(table);
    }

    public Task<T> WithProgressAsync<T>(string description, long total, Func<IProgressSink, Task<T>> work, ProgressUnit unit = ProgressUnit.Count) =>
        console.Progress()
            .AutoClear(false)
            .Columns(unit == ProgressUnit.Bytes
                ? [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn()]
                : [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn()])
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(description), maxValue: Math.Max(1, total));
                var result = await work(new TaskSink(task, description));
                task.Value = task.MaxValue;
                return result;
            });

    private sealed class TaskSink(ProgressTask task, string description) : IProgressSink
    {
        public void Report(long done, string? current = null, long? total = null)
        {
            if (total is { } t) task.MaxValue = Math.Max(1, t);
            task.Value = done;
            if (current is not null) task.Description = Markup.Escape($"{description}: {current}");
        }
    }
}
