namespace KQuant.Model.Tokenizers;

/// <summary>Text being merged into tokens: a doubly linked list of adjacent symbols over the text's bytes, first one per
/// character. Merging a pair makes the left symbol cover both and unlinks the right one (its length becomes 0), so a
/// queued pair whose symbols have changed since can be recognized and skipped. Both BPE tokenizers merge this way, with
/// a priority queue of candidate pairs, which keeps a long text's tokenization at O(n log n).</summary>
internal sealed class SymbolChain
{
    public struct Symbol
    {
        public int Start;
        public int Length;
        public int Prev;
        public int Next;
        /// <summary>What the tokenizer knows the symbol's text as (a token or merge-table id), or -1.</summary>
        public int Id;
    }

    private Symbol[] _symbols = new Symbol[64];

    public int Count { get; private set; }

    public ref Symbol this[int index] => ref _symbols[index];

    /// <summary>One symbol per character of <paramref name="text"/>, by the length its lead byte announces (a sequence
    /// cut short by the end of the text is a shorter symbol), as llama.cpp splits text.</summary>
    public void Reset(ReadOnlySpan<byte> text)
    {
        if (_symbols.Length < text.Length) _symbols = new Symbol[Math.Max(text.Length, _symbols.Length * 2)];
        Count = 0;
        for (var offset = 0; offset < text.Length;)
        {
            var length = Math.Min(LenientUtf8.SequenceLength(text[offset]), text.Length - offset);
            _symbols[Count] = new Symbol
            {
                Start = offset,
                Length = length,
                Prev = Count - 1,
                Next = offset + length == text.Length ? -1 : Count + 1,
                Id = -1,
            };
            Count++;
            offset += length;
        }
    }

    /// <summary>The left symbol absorbs its right neighbour.</summary>
    public void Merge(int left, int right)
    {
        ref var l = ref _symbols[left];
        ref var r = ref _symbols[right];
        l.Length += r.Length;
        r.Length = 0;
        l.Next = r.Next;
        if (r.Next >= 0) _symbols[r.Next].Prev = left;
    }
}
