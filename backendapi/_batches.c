/* backendapi._batches: the streams' per-event steps over a batch, in C.
 *
 * A batch is the list of dicts the decoder made of one network read. Two
 * steps over it run once per event, and are done here when this module is
 * built (setup.py; it is optional, and each has a Python twin that the
 * package runs otherwise, with the same results: tests/test_batches.py
 * compares them):
 *
 * wrap_events(cls, dicts) returns an iterator over new instances of cls,
 * one per dict that the iterator dicts gives, each made without calling
 * __init__ and with that very dict as its __dict__, as the streams' loop
 * does in Python:
 *
 *     for data in dicts:
 *         event = object.__new__(cls)
 *         event.__dict__ = data      # the __dict__ slot, not __setattr__
 *         yield event
 *
 * content_pieces(items) returns the list of item["content"] when every item
 * is a plain content piece (a dict of exactly the two keys "type", equal to
 * "content", and "content"), else None: _base.py's _python_content_pieces.
 *
 * Invariants:
 * - wrap_events checks cls once: a class whose instances have a __dict__ and
 *   whose __new__ is object.__new__, so that allocating it with tp_alloc is
 *   what object.__new__(cls) does.
 * - Each item is set through the class's own __dict__ descriptor, found once
 *   (as ``event.__dict__ = data`` finds it), never PyObject_GenericSetDict:
 *   on 3.13 that leaves an instance's inline values in force, so its fields
 *   read as missing. A non-dict item raises the TypeError the Python loop
 *   raises, and the half-made instance is freed.
 * - The wrapper takes items from dicts only when asked for one, so the
 *   caller's own view of dicts (its __length_hint__) counts what was handed
 *   out. The streams' generators end at any exception, so what the wrapper
 *   would do after one is never seen.
 * - content_pieces holds a reference to each item while it looks into it and
 *   checks the list's length at every step: a dict lookup can run Python
 *   code (a key's __eq__), which could change the list.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    PyObject *setter; /* the class's __dict__ descriptor: its __set__ sets the fields */
    PyObject *dicts;
} EventsObject;

static int
events_traverse(EventsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    Py_VISIT(self->setter);
    Py_VISIT(self->dicts);
    return 0;
}

static int
events_clear(EventsObject *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->setter);
    Py_CLEAR(self->dicts);
    return 0;
}

static void
events_dealloc(EventsObject *self)
{
    PyObject_GC_UnTrack(self);
    events_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
events_next(EventsObject *self)
{
    PyObject *data, *event;

    if (self->dicts == NULL) {
        return NULL;
    }
    data = Py_TYPE(self->dicts)->tp_iternext(self->dicts);
    if (data == NULL) {
        return NULL; /* exhausted, or the iterator's own exception */
    }
    event = self->cls->tp_alloc(self->cls, 0);
    if (event == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    if (Py_TYPE(self->setter)->tp_descr_set(self->setter, event, data) < 0) {
        Py_DECREF(data);
        Py_DECREF(event);
        return NULL;
    }
    Py_DECREF(data); /* the instance holds it now */
    return event;
}

static PyTypeObject EventsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "backendapi._batches.events",
    .tp_doc = PyDoc_STR("Iterator of events made by wrap_events()."),
    .tp_basicsize = sizeof(EventsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)events_dealloc,
    .tp_traverse = (traverseproc)events_traverse,
    .tp_clear = (inquiry)events_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)events_next,
};

/* The __dict__ data descriptor that instances of cls get from their class
 * (what ``event.__dict__ = data`` sets through), as a new reference; NULL,
 * with no exception set, if there is none. */
static PyObject *
dict_setter(PyTypeObject *cls)
{
    PyObject *mro = cls->tp_mro, *name, *found = NULL;
    Py_ssize_t i;

    if (mro == NULL || !PyTuple_Check(mro)) {
        return NULL;
    }
    name = PyUnicode_InternFromString("__dict__");
    if (name == NULL) {
        return NULL;
    }
    for (i = 0; i < PyTuple_GET_SIZE(mro) && found == NULL; i++) {
        PyObject *base_dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        if (base_dict != NULL) {
            found = PyDict_GetItemWithError(base_dict, name); /* borrowed */
            if (found == NULL && PyErr_Occurred()) {
                break;
            }
        }
    }
    Py_DECREF(name);
    if (found == NULL || Py_TYPE(found)->tp_descr_set == NULL) {
        return NULL;
    }
    Py_INCREF(found);
    return found;
}

static PyObject *
wrap_events(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *cls;
    PyObject *setter;
    EventsObject *self;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "wrap_events() takes 2 arguments (cls, dicts), %zd given", nargs);
        return NULL;
    }
    if (!PyType_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "wrap_events() needs a class, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    cls = (PyTypeObject *)args[0];
    if (!PyIter_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "wrap_events() needs an iterator, not %.100s",
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    setter = NULL;
    if (cls->tp_dictoffset != 0 && cls->tp_new == PyBaseObject_Type.tp_new
        && !PyType_HasFeature(cls, Py_TPFLAGS_IS_ABSTRACT)) {
        setter = dict_setter(cls);
    }
    if (setter == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError,
                         "wrap_events() needs a concrete class with a __dict__ and "
                         "object's __new__, not %.100s", cls->tp_name);
        }
        return NULL;
    }
    self = PyObject_GC_New(EventsObject, &EventsType);
    if (self == NULL) {
        Py_DECREF(setter);
        return NULL;
    }
    Py_INCREF(cls);
    self->cls = cls;
    self->setter = setter;
    Py_INCREF(args[1]);
    self->dicts = args[1];
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
content_pieces(PyObject *Py_UNUSED(module), PyObject *items)
{
    static PyObject *type_key = NULL, *content_key = NULL;
    PyObject *result, *item, *value;
    Py_ssize_t i, n;

    if (!PyList_Check(items)) {
        PyErr_Format(PyExc_TypeError, "content_pieces() needs a list, not %.100s",
                     Py_TYPE(items)->tp_name);
        return NULL;
    }
    if (type_key == NULL) {
        type_key = PyUnicode_InternFromString("type");
        content_key = PyUnicode_InternFromString("content");
        if (type_key == NULL || content_key == NULL) {
            Py_CLEAR(type_key);
            Py_CLEAR(content_key);
            return NULL;
        }
    }
    n = PyList_GET_SIZE(items);
    result = PyList_New(n);
    if (result == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (i >= PyList_GET_SIZE(items)) {
            goto not_plain; /* the list changed under us */
        }
        item = PyList_GET_ITEM(items, i);
        if (!PyDict_Check(item) || PyDict_GET_SIZE(item) != 2) {
            goto not_plain;
        }
        Py_INCREF(item);
        value = PyDict_GetItemWithError(item, type_key); /* borrowed */
        if (value == NULL || !PyUnicode_Check(value)
            || PyUnicode_CompareWithASCIIString(value, "content") != 0) {
            Py_DECREF(item);
            goto not_plain_or_error;
        }
        value = PyDict_GetItemWithError(item, content_key);
        if (value == NULL) {
            Py_DECREF(item);
            goto not_plain_or_error;
        }
        Py_INCREF(value);
        PyList_SET_ITEM(result, i, value);
        Py_DECREF(item);
    }
    return result;

not_plain_or_error:
    if (PyErr_Occurred()) {
        Py_DECREF(result);
        return NULL;
    }
not_plain:
    Py_DECREF(result); /* its unset items are NULL, which a list's dealloc skips */
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"wrap_events", (PyCFunction)(void (*)(void))wrap_events, METH_FASTCALL,
     PyDoc_STR("wrap_events(cls, dicts, /)\n--\n\n"
               "An iterator of new cls instances, one per dict of dicts, each with\n"
               "that dict as its __dict__ (no __init__ is called).")},
    {"content_pieces", content_pieces, METH_O,
     PyDoc_STR("content_pieces(items, /)\n--\n\n"
               "The list of item[\"content\"] if every item is a dict of just \"type\" (equal\n"
               "to \"content\") and \"content\"; None otherwise.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "backendapi._batches",
    .m_doc = PyDoc_STR("The streams' per-event steps over a batch, in C (optional)."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__batches(void)
{
    if (PyType_Ready(&EventsType) < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
