namespace KQuant.Model.Tokenizers;

/// <summary>A binary min-heap of structs ordered by <typeparamref name="TOrder"/>, a struct comparer the JIT inlines;
/// the queue of candidate merges, which sees millions of operations on a long text.</summary>
internal sealed class MinHeap<T, TOrder>
    where T : struct
    where TOrder : struct, IComparer<T>
{
    private T[] _items = new T[64];

    public int Count { get; private set; }

    public void Clear() => Count = 0;

    public void Push(T item)
    {
        if (Count == _items.Length) Array.Resize(ref _items, _items.Length * 2);
        var i = Count++;
        while (i > 0)
        {
            var parent = (i - 1) >> 1;
            if (default(TOrder).Compare(item, _items[parent]) >= 0) break;
            _items[i] = _items[parent];
            i = parent;
        }
        _items[i] = item;
    }

    public bool TryPop(out T top)
    {
        if (Count == 0)
        {
            top = default;
            return false;
        }
        top = _items[0];
        var last = _items[--Count];
        var i = 0;
        while (true)
        {
            var child = 2 * i + 1;
            if (child >= Count) break;
            if (child + 1 < Count && default(TOrder).Compare(_items[child + 1], _items[child]) < 0) child++;
            if (default(TOrder).Compare(last, _items[child]) <= 0) break;
            _items[i] = _items[child];
            i = child;
        }
        if (Count > 0) _items[i] = last;
        return true;
    }
}
