ARITH = r'''
# Did it learn the grammar's arithmetic? Every "a plus b is" and "a minus b is" with a, b in 0..10.
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
right = {"plus": 0, "minus": 0}
total = {"plus": 0, "minus": 0}
wrong = []
for a in range(11):
    for b in range(11):
        for op, c in (("plus", a + b), ("minus", a - b)):
            if c < 0:
                continue
            answer = lm.complete(f"{NUMBERS[a]} {op} {NUMBERS[b]} is", max_new_tokens=12).strip()
            total[op] += 1
            right[op] += answer == NUMBERS[c]
            if answer != NUMBERS[c]:
                wrong.append(f"{NUMBERS[a]} {op} {NUMBERS[b]} is {answer} (not {NUMBERS[c]})")
print("'two plus three is' ->", repr(lm.complete("two plus three is")))
for op in total:
    print(f"{op}: {right[op]}/{total[op]} sums right ({right[op] / total[op]:.0%})")
print("some mistakes:", "; ".join(wrong[:4]))
'''
LOST = r'''
for label in labels:
    audio_acc, text_acc = lost[f"{label}_acc_audio"], lost[f"{label}_acc_text"]
    assert audio_acc >= 0.9, f"{label}: the audio probe reaches only {audio_acc:.2f}"
    assert audio_acc - text_acc >= 0.3, f"{label}: audio {audio_acc:.2f} is not 0.3 above text {text_acc:.2f}"
'''
