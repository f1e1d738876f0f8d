"""Learning check for `generative_vqa` on the embedded shapes questions.

Trains the zoo entry on shapes questions with their answers as text
(`shapes(task="vqa", answers="text")`), then answers held-out questions about
held-out images (the "test" split, never seen in training): VQA accuracy from
the model's own `evaluate`, and the same count done here on the strings of
`model.answer`, per question type, against two baselines that never look at
the image: the most common training answer, and the most common training
answer of each question type.

Run: `.venv/bin/python zoo/generative_vqa/learning_check.py [--examples 4000] [--epochs 10]`
"""

import argparse
import collections
import time

import numpy as np

import kerasmm

QUESTION_TYPES = {"what colour": "colour", "what shape": "shape", "how many": "count"}


def question_type(question):
    return next(kind for start, kind in QUESTION_TYPES.items() if question.startswith(start))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="generative_vqa")
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    data = {"task": "vqa", "answers": "text"}
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, shuffle=True, **data)
    held_out = kerasmm.data.shapes(num_examples=args.held_out, batch_size=100, split="test", **data)
    model = kerasmm.zoo.get(args.entry)
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    scores = model.evaluate(held_out, verbose=0, return_dict=True)

    features, answers = kerasmm.data.shapes_arrays(num_examples=args.held_out, split="test", **data)
    questions = [str(q) for q in features["text"]]
    predicted = model.answer(features["image"], questions)
    right = np.array([p == a for p, a in zip(predicted, answers)])
    kinds = np.array([question_type(q) for q in questions])

    train_features, train_answers = kerasmm.data.shapes_arrays(num_examples=args.examples, **data)
    train_kinds = [question_type(str(q)) for q in train_features["text"]]
    majority = collections.Counter(train_answers).most_common(1)[0][0]
    per_kind = {k: collections.Counter(a for a, t in zip(train_answers, train_kinds) if t == k).most_common(1)[0][0]
                for k in set(train_kinds)}

    print(f"\n{args.entry} on shapes: {args.examples} training questions, {args.epochs} epochs, batch "
          f"{args.batch_size}, {seconds:.0f} s of training; {args.held_out} held-out questions, greedy decoding")
    print(f"  evaluate: vqa_accuracy {scores['vqa_accuracy']:.3f}; answer(): {right.mean():.3f} exact")
    print(f"  majority answer {majority!r}: {np.mean(answers == majority):.3f}; majority answer per question "
          f"type: {np.mean([a == per_kind[k] for a, k in zip(answers, kinds)]):.3f}")
    for kind in QUESTION_TYPES.values():
        chosen = kinds == kind
        print(f"  {kind:6} questions ({chosen.sum()}): {right[chosen].mean():.3f} right; majority "
              f"{per_kind[kind]!r} {np.mean(answers[chosen] == per_kind[kind]):.3f}")
    for question, answer, reference in list(zip(questions, predicted, answers))[:5]:
        print(f"  {question!r:32} -> {answer!r:10} reference {reference!r}")


if __name__ == "__main__":
    main()
